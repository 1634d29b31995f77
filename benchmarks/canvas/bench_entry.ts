/**
 * In-page benchmark driver: renders the synthetic graph with the real widget bundle (loaded
 * from vortex_jupyter/static/widget.js, fed by FakeKernel) and with litegraph, and measures
 * first render time and frame times (rAF-driven, one forced redraw per frame) while panning,
 * zooming and with the whole graph on screen. `run.py` calls `window.vxBench.*`.
 */
import { LGraph, LGraphCanvas, LGraphNode, LiteGraph } from "@comfyorg/litegraph";
import { FakeKernel } from "./fake_kernel";
import { COL_W, ROW_H, SPECS, makeGraph } from "./synthetic";

const W = 1280, H = 720;
const raf = (): Promise<number> => new Promise((r) => requestAnimationFrame(r));

interface View { zoom: number; panX: number; panY: number }
interface Scenario { fps: number; meanFrameMs: number; meanDrawMs: number; p95DrawMs: number }
export interface Result { firstRenderMs: number; firstRenderMinMs?: number; syncApplyMs?: number; firstDrawMs?: number; pan: Scenario; zoom: Scenario; whole: Scenario }

function fitView(n: number): View {
  const cols = Math.ceil(Math.sqrt(n * 1.5)), rows = Math.ceil(n / cols);
  const gw = cols * COL_W, gh = rows * ROW_H;
  const zoom = Math.min((W - 48) / gw, (H - 48) / gh);
  return { zoom, panX: (W - gw * zoom) / 2, panY: (H - gh * zoom) / 2 };
}

/** Runs `frames` animation frames; each calls `step(i)` which moves the view and draws. */
async function measure(frames: number, step: (i: number) => void): Promise<Scenario> {
  const gaps: number[] = [], draws: number[] = [];
  await raf();
  let last = performance.now();
  for (let i = 0; i < frames; i++) {
    await raf();
    const now = performance.now();
    gaps.push(now - last);
    last = now;
    step(i);
    draws.push(performance.now() - now);
  }
  const mean = (a: number[]): number => a.reduce((s, x) => s + x, 0) / a.length;
  const sorted = [...draws].sort((a, b) => a - b);
  const meanFrameMs = mean(gaps);
  return { fps: 1000 / meanFrameMs, meanFrameMs, meanDrawMs: mean(draws), p95DrawMs: sorted[Math.floor(sorted.length * 0.95)] };
}

/** Pan at zoom 0.8, zoom between fit and 1.0 around the centre, then the whole graph. */
async function scenarios(n: number, frames: number, setView: (v: View) => void): Promise<Omit<Result, "firstRenderMs">> {
  const fit = fitView(n);
  const pan = await measure(frames, (i) => setView({ zoom: 0.8, panX: -i * 12, panY: -i * 6 }));
  const zoom = await measure(frames, (i) => {
    const t = (Math.sin(i / 10) + 1) / 2;
    const z = fit.zoom * Math.pow(1 / fit.zoom, t);
    setView({ zoom: z, panX: W / 2 - (W / 2 - fit.panX) * (z / fit.zoom), panY: H / 2 - (H / 2 - fit.panY) * (z / fit.zoom) });
  });
  const whole = await measure(frames, () => setView(fit));
  return { pan, zoom, whole };
}

function container(): HTMLDivElement {
  document.body.replaceChildren();
  const el = document.createElement("div");
  el.style.width = `${W}px`;
  document.body.appendChild(el);
  return el;
}

/** A clean heap before each timed start, when Chromium runs with --js-flags=--expose-gc. */
function collect(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

/** Mounts the real widget on a fresh fake kernel holding the graph; resolves after the first frame. */
async function mountOurs(n: number): Promise<{ hook: any; cleanup: () => void; first: number; sync: number; draw: number }> {
  // The fake kernel bundles its own yjs (like JupyterLab does); the widget bundle's banner
  // clears yjs' duplicate-import flag itself, so no console error is expected here.
  const mod = await import(/* @vite-ignore */ "/vortex_jupyter/static/widget.js" as string);
  const g = makeGraph(n);
  const kernel = new FakeKernel();
  kernel.load(g.nodes, g.edges);
  const el = container();
  const model = kernel.model({ specs: SPECS, height: H - 33, view_id: "bench" });
  collect();
  const t0 = performance.now();
  const cleanup = mod.default.render({ model, el });
  const hook = (el.querySelector(".vx-root") as any).__vortex;
  while (hook.drawStats().frames === 0 || hook.drawStats().nodes < n) await raf();
  const st = hook.drawStats();
  return { hook, cleanup, first: st.lastDrawAt - t0, sync: st.syncApplyMs, draw: st.lastDrawMs };
}

/** First render: median of `repeats` fresh mounts; frame rates on the last one. */
async function runOurs(n: number, frames = 90, repeats = 3): Promise<Result> {
  const firsts: number[] = [], syncs: number[] = [], draws: number[] = [];
  let m = await mountOurs(n);
  for (let i = 0; ; i++) {
    firsts.push(m.first); syncs.push(m.sync); draws.push(m.draw);
    if (i + 1 >= repeats) break;
    m.cleanup();
    m = await mountOurs(n);
  }
  const hook = m.hook;
  const set = (v: View): void => { hook.setView(v.zoom, v.panX, v.panY); hook.redraw(); };
  const res = await scenarios(n, frames, set);
  m.cleanup();
  return {
    firstRenderMs: median(firsts), firstRenderMinMs: Math.min(...firsts),
    syncApplyMs: median(syncs), firstDrawMs: median(draws), ...res,
  };
}

class BenchNode extends LGraphNode {}

function registerLitegraphTypes(): void {
  for (const spec of Object.values(SPECS)) {
    if (LiteGraph.registered_node_types[spec.type]) continue;
    const Cls = class extends BenchNode {
      constructor(title?: string) {
        super(title ?? spec.display_name);
        for (const p of spec.inputs) {
          const q = p as { name: string; type: string; widget: boolean; default?: unknown; choices?: readonly string[] };
          if (!q.widget) this.addInput(q.name, q.type);
          else if (q.choices) this.addWidget("combo", q.name, q.default as string, null, { values: [...q.choices] });
          else if (q.type === "STRING") this.addWidget("text", q.name, q.default as string, null, {});
          else this.addWidget("number", q.name, q.default as number, null, {});
        }
        for (const o of spec.outputs) this.addOutput(o.name, o.type);
      }
    };
    LiteGraph.registerNodeType(spec.type, Cls as never);
  }
}

async function runLitegraph(n: number, frames = 90): Promise<Result> {
  registerLitegraphTypes();
  const el = container();
  const canvas = document.createElement("canvas");
  canvas.width = W; canvas.height = H;
  el.appendChild(canvas);
  const g = makeGraph(n);
  collect();
  const t0 = performance.now();
  const graph = new LGraph();
  const byId = new Map<string, LGraphNode>();
  for (const s of g.nodes) {
    const node = LiteGraph.createNode(s.type) as LGraphNode;
    node.pos = [s.x, s.y];
    graph.add(node);
    byId.set(s.id, node);
  }
  for (const e of g.edges) byId.get(e.src)!.connect(e.src_output, byId.get(e.dst)!, e.dst_input);
  const lg = new LGraphCanvas(canvas, graph, { skip_render: true } as never);
  lg.ds.min_scale = 0.005;
  const set = (v: View): void => {
    lg.ds.scale = v.zoom;
    lg.ds.offset = [v.panX / v.zoom, v.panY / v.zoom];
    lg.setDirty(true, true);
    lg.draw(true, true);
  };
  set(fitView(n));
  const firstRenderMs = performance.now() - t0;
  const res = await scenarios(n, frames, set);
  graph.clear();
  return { firstRenderMs, ...res };
}

(window as any).vxBench = { runOurs, runLitegraph };

/** Mounts the widget on a small graph and keeps it (used by check_widget.py). */
async function mountDemo(): Promise<void> {
  const mod = await import(/* @vite-ignore */ "/vortex_jupyter/static/widget.js" as string);
  const kernel = new FakeKernel();
  kernel.load([
    { id: "load", type: "BenchLoader", x: 0, y: 0, params: { path: "a.png", scale: 1 } },
    { id: "proc", type: "BenchProcess", x: 350, y: 0, params: { steps: 20, mode: "fast" } },
    { id: "view", type: "BenchPreview", x: 700, y: 0, params: { prefix: "out" } },
  ], [{ src: "load", src_output: 0, dst: "proc", dst_input: "image" }]);
  const el = container();
  const model = kernel.model({ specs: SPECS, height: 600, view_id: "demo" });
  const cleanup = mod.default.render({ model, el });
  (window as any).vxDemo = { kernel, el, model, cleanup, hook: (el.querySelector(".vx-root") as any).__vortex };
}

(window as any).vxBench.mountDemo = mountDemo;
