/**
 * The synthetic graph both renderers draw: N nodes of three ComfyUI-like types on a grid,
 * in chains of three (Loader -> Process -> Preview), so there are ~2N/3 edges, every node
 * has sockets and widget rows, and edges run between neighbours.
 */
export interface SynthNode { id: string; type: string; x: number; y: number; params: Record<string, unknown> }
export interface SynthEdge { src: string; src_output: number; dst: string; dst_input: string }

export const SPECS = {
  BenchLoader: {
    type: "BenchLoader", display_name: "Bench Loader", category: "bench/io",
    inputs: [
      { name: "path", type: "STRING", default: "image.png", widget: true },
      { name: "scale", type: "FLOAT", default: 1.0, min: 0, max: 4, step: 0.1, widget: true },
    ],
    outputs: [{ name: "IMAGE", type: "IMAGE" }, { name: "MASK", type: "MASK" }],
  },
  BenchProcess: {
    type: "BenchProcess", display_name: "Bench Process", category: "bench/ops",
    inputs: [
      { name: "image", type: "IMAGE", widget: false },
      { name: "mask", type: "MASK", widget: false },
      { name: "steps", type: "INT", default: 20, min: 1, max: 100, widget: true },
      { name: "mode", type: "COMBO", choices: ["fast", "slow"], default: "fast", widget: true },
    ],
    outputs: [{ name: "IMAGE", type: "IMAGE" }],
  },
  BenchPreview: {
    type: "BenchPreview", display_name: "Bench Preview", category: "bench/io",
    inputs: [{ name: "images", type: "IMAGE", widget: false }, { name: "prefix", type: "STRING", default: "out", widget: true }],
    outputs: [],
  },
} as const;

const TYPES = ["BenchLoader", "BenchProcess", "BenchPreview"] as const;
export const COL_W = 300;
export const ROW_H = 200;

export function makeGraph(n: number): { nodes: SynthNode[]; edges: SynthEdge[] } {
  const cols = Math.ceil(Math.sqrt(n * 1.5));
  const nodes: SynthNode[] = [];
  const edges: SynthEdge[] = [];
  for (let i = 0; i < n; i++) {
    const type = TYPES[i % 3];
    const params: Record<string, unknown> =
      type === "BenchLoader" ? { path: `img_${i}.png`, scale: 1.0 }
      : type === "BenchProcess" ? { steps: 20, mode: "fast" } : { prefix: `out_${i}` };
    nodes.push({ id: `n${i}`, type, x: (i % cols) * COL_W, y: Math.floor(i / cols) * ROW_H, params });
    if (type === "BenchProcess") {
      edges.push({ src: `n${i - 1}`, src_output: 0, dst: `n${i}`, dst_input: "image" });
      edges.push({ src: `n${i - 1}`, src_output: 1, dst: `n${i}`, dst_input: "mask" });
    } else if (type === "BenchPreview") {
      edges.push({ src: `n${i - 1}`, src_output: 0, dst: `n${i}`, dst_input: "images" });
    }
  }
  return { nodes, edges };
}
