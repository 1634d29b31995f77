import { describe, expect, it } from "vitest";
import { Renderer } from "../src/render/renderer";
import { RunState } from "../src/runstate";
import { makeView } from "./helpers/fixtures";

/** A 2D context stand-in that records what is painted, in order. */
function recordingCanvas(w = 800, h = 600) {
  const calls: string[] = [];
  const state: Record<string | symbol, unknown> = { fillStyle: "", strokeStyle: "" };
  const ctx = new Proxy(state, {
    get: (t, k) => {
      if (k === "measureText") return () => ({ width: 10 });
      if (k in t) return t[k];
      return () => {
        if (k === "fillRect") calls.push(`fillRect ${String(t.fillStyle)}`);
        else if (k === "fill") calls.push(`fill ${String(t.fillStyle)}`);
        else if (k === "stroke") calls.push(`stroke ${String(t.strokeStyle)}`);
        else if (k === "arc") calls.push("arc");
        return undefined;
      };
    },
    set: (t, k, v) => { t[k] = v; return true; },
  });
  return { canvas: { clientWidth: w, clientHeight: h, width: w, height: h, getContext: () => ctx }, calls };
}

const EDGE = "stroke #8a93a6";
const BODY = "fillRect #2b2f3a";

/** Two linked nodes and a third lying across the wire between them. */
function scene() {
  const v = makeView();
  v.g.addNode({ id: "a", type: "Loader", x: 0, y: 0, params: {} });
  v.g.addNode({ id: "b", type: "Blur", x: 700, y: 0, params: {} });
  v.g.addNode({ id: "over", type: "Loader", x: 300, y: -20, params: {} });
  v.g.connect({ src: "a", src_output: 0, dst: "b", dst_input: "image" });
  return v;
}

function paint(zoom: number): string[] {
  const { canvas, calls } = recordingCanvas();
  const r = new Renderer(canvas as unknown as HTMLCanvasElement, scene().scene, new RunState());
  r.view = { zoom, panX: 20, panY: 200 };
  r.draw();
  return calls;
}

describe("wires and nodes", () => {
  it("draws wires over node bodies and sockets over wires when zoomed in (LOD 2)", () => {
    const calls = paint(1);
    const edge = calls.indexOf(EDGE);
    expect(edge).toBeGreaterThan(calls.lastIndexOf(BODY));
    expect(calls.indexOf("arc")).toBeGreaterThan(edge);
    expect(calls.filter((c) => c === EDGE)).toHaveLength(1);
  });

  it("draws wires over node frames at LOD 1", () => {
    const calls = paint(0.4);
    expect(calls.indexOf(EDGE)).toBeGreaterThan(calls.lastIndexOf(BODY));
    expect(calls).not.toContain("arc");
  });

  it("keeps LOD 0 batched: one fill per color for the boxes, then one stroke for every wire", () => {
    const calls = paint(0.2);
    const fills = calls.filter((c) => c.startsWith("fill "));
    expect(new Set(fills).size).toBe(fills.length); // one fill per color
    expect(calls.filter((c) => c === EDGE)).toHaveLength(1);
    expect(calls.indexOf(EDGE)).toBeGreaterThan(calls.lastIndexOf(fills[fills.length - 1]));
  });
});
