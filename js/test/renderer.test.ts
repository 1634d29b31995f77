import { describe, expect, it } from "vitest";
import { EMPTY_HINT, Renderer } from "../src/render/renderer";
import { RunState } from "../src/runstate";
import * as Y from "yjs";
import { GraphDoc } from "../src/docmodel";
import { Scene } from "../src/scene";

/** A canvas stand-in whose CSS size we control; any 2D call is a no-op. */
function fakeCanvas(w: number, h: number) {
  const texts: string[] = [];
  const ctx = new Proxy({}, {
    get: (_t, k) => (k === "measureText" ? () => ({ width: 10 })
      : k === "fillText" ? (t: string) => { texts.push(t); } : () => undefined),
    set: () => true,
  });
  return { clientWidth: w, clientHeight: h, width: w, height: h, getContext: () => ctx, texts };
}

describe("a canvas hidden by JupyterLab", () => {
  it("keeps its backing store and draws nothing while it measures 0 x 0, then draws when shown", () => {
    const canvas = fakeCanvas(800, 500);
    const r = new Renderer(canvas as unknown as HTMLCanvasElement, new Scene(new GraphDoc(new Y.Doc(), {})), new RunState());
    r.draw();
    expect(r.frames).toBe(1);
    canvas.clientWidth = 0; // output hidden (windowing / content-visibility / theme re-layout)
    canvas.clientHeight = 0;
    expect(r.hidden()).toBe(true);
    expect(r.resize()).toBe(false);
    r.draw();
    expect([canvas.width, canvas.height]).toEqual([800, 500]); // was shrunk to 1 x 1: blank once shown
    expect(r.frames).toBe(1);
    expect([r.width, r.height]).toEqual([800, 500]);
    canvas.clientWidth = 600;
    canvas.clientHeight = 400;
    r.draw();
    expect(r.frames).toBe(2);
    expect([canvas.width, canvas.height]).toEqual([600, 400]);
  });
});

describe("an empty graph", () => {
  it("draws a hint saying how to add a node, and no hint once there is one", () => {
    const canvas = fakeCanvas(800, 500);
    const gdoc = new GraphDoc(new Y.Doc(), {});
    const r = new Renderer(canvas as unknown as HTMLCanvasElement, new Scene(gdoc), new RunState());
    r.draw();
    expect(canvas.texts).not.toContain(EMPTY_HINT); // not synced yet: maybe not empty at all
    r.emptyHint = true;
    r.draw();
    expect(canvas.texts).toContain(EMPTY_HINT);
    canvas.texts.length = 0;
    gdoc.addNode({ id: "a", type: "IntAdd", x: 0, y: 0, params: {} });
    r.draw();
    expect(canvas.texts).not.toContain(EMPTY_HINT);
  });
});
