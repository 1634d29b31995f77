import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { hitTest } from "../src/render/hittest";
import { PAD, PREVIEW_H, outputPos, widgetRect } from "../src/render/layout";
import { drag, kernelField, stubBrowser, testView, updatesSent, type TestView } from "./helpers/host";
import { Relay } from "./helpers/relay";

/** A Blur node at (100, 50) (natural size: the layout's, nothing in the doc) and a Loader. */
function graph() {
  const relay = new Relay();
  const v = testView(relay);
  v.g.addNode({ id: "b", type: "Blur", x: 100, y: 50, params: {} });
  v.g.addNode({ id: "l", type: "Loader", x: 500, y: 50, params: {} });
  v.editor.undo.clear();
  const n = v.scene.nodes.get("b")!;
  return { relay, v, natural: { w: n.w, h: n.h } };
}

/** The bottom-right corner of node `id`, 3 px inside it (on its grip). */
function corner(v: TestView, id: string): [number, number] {
  const n = v.scene.nodes.get(id)!;
  return [n.x + n.w - 3, n.y + n.h - 3];
}

function size(v: TestView, id: string): { w: number; h: number } {
  const n = v.scene.nodes.get(id)!;
  return { w: n.w, h: n.h };
}

beforeEach(stubBrowser);
afterEach(() => { vi.unstubAllGlobals(); });

describe("resizing a node by its corner grip", () => {
  it("shows the new size live in this view and writes w/h to the doc once, on release", () => {
    const { relay, v, natural } = graph();
    const [x, y] = corner(v, "b");
    const sent = updatesSent(v);
    drag(v, [x, y], [x + 100, y + 60], 5, false);
    expect(size(v, "b")).toEqual({ w: natural.w + 100, h: natural.h + 60 }); // live, here
    expect(kernelField(relay, "b", "w")).toBeUndefined(); // nothing written yet
    expect(updatesSent(v)).toBe(sent);
    v.pointer.up({ clientX: x + 100, clientY: y + 60, button: 0 } as PointerEvent);
    expect([kernelField(relay, "b", "w"), kernelField(relay, "b", "h")]).toEqual([natural.w + 100, natural.h + 60]);
    expect(updatesSent(v) - sent).toBe(1); // one transaction
    expect(size(v, "b")).toEqual({ w: natural.w + 100, h: natural.h + 60 });
    expect(size(v, "l")).toEqual(size(testView(relay), "l")); // the other node is untouched
  });

  it("is one undo step, and redo puts the size back", () => {
    const { relay, v, natural } = graph();
    const [x, y] = corner(v, "b");
    drag(v, [x, y], [x + 40, y + 30], 20);
    v.editor.undo.undo();
    expect(kernelField(relay, "b", "w")).toBeUndefined();
    expect(size(v, "b")).toEqual(natural);
    expect(v.editor.undo.canUndo()).toBe(false);
    v.editor.undo.redo();
    expect(size(v, "b")).toEqual({ w: natural.w + 40, h: natural.h + 30 });
  });

  it("never makes a node smaller than its title, sockets and widgets need", () => {
    const { relay, v, natural } = graph();
    let [x, y] = corner(v, "b");
    drag(v, [x, y], [x + 200, y + 150]);
    [x, y] = corner(v, "b");
    drag(v, [x, y], [x - 1000, y - 1000]);
    expect([kernelField(relay, "b", "w"), kernelField(relay, "b", "h")]).toEqual([natural.w, natural.h]);
    const n = v.scene.nodes.get("b")!;
    expect([n.minW, n.minH]).toEqual([natural.w, natural.h]);
    const row = widgetRect(n, "radius")!;
    expect(row.y + row.h).toBeLessThanOrEqual(n.y + n.h); // the last widget row still fits
  });

  it("stretches widget rows with the width and keeps outputs on the right edge", () => {
    const { v } = graph();
    const [x, y] = corner(v, "b");
    drag(v, [x, y], [x + 120, y]);
    const n = v.scene.nodes.get("b")!;
    expect(widgetRect(n, "radius")!.w).toBe(n.w - 4 * PAD);
    expect(outputPos(n, 0)![0]).toBe(n.x + n.w);
  });

  it("draws the preview image inside the resized node, using the extra height", () => {
    const { v } = graph();
    v.scene.setPreview("b", true);
    v.r.run.images.set("b", { width: 100, height: 100 } as unknown as HTMLImageElement);
    const [x, y] = corner(v, "b");
    drag(v, [x, y], [x + 200, y + 300]);
    const n = v.scene.nodes.get("b")!;
    expect(n.h - n.previewTop).toBeGreaterThan(PREVIEW_H + 250);
    v.r.draw();
    const img = v.canvas.calls.filter((c) => c.op === "drawImage").map((c) => c.args.slice(1) as number[]);
    expect(img).toHaveLength(1);
    const [ix, iy, iw, ih] = img[0];
    expect(iw).toBeGreaterThan(PREVIEW_H); // grew with the node (was at most PREVIEW_H - 8)
    expect(ix).toBeGreaterThanOrEqual(n.x);
    expect(ix + iw).toBeLessThanOrEqual(n.x + n.w);
    expect(iy).toBeGreaterThanOrEqual(n.y + n.previewTop);
    expect(iy + ih).toBeLessThanOrEqual(n.y + n.h);
  });
});

describe("hit-testing the resize grip", () => {
  it("finds the grip before the node's body, where the grip is drawn", () => {
    const { v } = graph();
    const n = v.scene.nodes.get("b")!;
    const [x, y] = corner(v, "b");
    expect(hitTest(v.scene, x, y, 1)).toMatchObject({ kind: "resize", node: { id: "b" } });
    expect(hitTest(v.scene, x - 40, y, 1)).toMatchObject({ kind: "body", node: { id: "b" } });
    expect(hitTest(v.scene, n.x + n.w + 3, y, 1)).toEqual({ kind: "none" }); // outside the node
    expect(hitTest(v.scene, x, y, 0.4)).toMatchObject({ kind: "body" }); // not drawn zoomed out
  });

  it("belongs to the topmost node where nodes overlap", () => {
    const { v } = graph();
    const [x, y] = corner(v, "b");
    v.g.addNode({ id: "over", type: "Loader", x: x - 50, y: y - 50, params: {} });
    expect(hitTest(v.scene, x, y, 1)).toMatchObject({ kind: "body", node: { id: "over" } });
    v.scene.raise(["b"]);
    expect(hitTest(v.scene, x, y, 1)).toMatchObject({ kind: "resize", node: { id: "b" } });
  });

  it("shows a resize cursor while the pointer is over a grip", () => {
    const { v } = graph();
    const [x, y] = corner(v, "b");
    v.pointer.move({ clientX: x, clientY: y } as PointerEvent);
    expect(v.el.style.cursor).toBe("nwse-resize");
    v.pointer.move({ clientX: x - 40, clientY: y } as PointerEvent);
    expect(v.el.style.cursor).toBe("");
  });
});
