import { describe, expect, it } from "vitest";
import { hitPort, hitTest, nodesInBox } from "../src/render/hittest";
import { PAD, ROW_H, TITLE_H, inputPos, outputPos, widgetRect } from "../src/render/layout";
import { SpatialGrid } from "../src/render/spatial";
import { makeView } from "./helpers/fixtures";

function graph() {
  const v = makeView();
  v.g.addNode({ id: "load", type: "Loader", x: 0, y: 0, params: { path: "a.png" } });
  v.g.addNode({ id: "blur", type: "Blur", x: 400, y: 0, params: { radius: 2 } });
  v.g.addNode({ id: "far", type: "Blur", x: 5000, y: 5000, params: {} });
  return v;
}

describe("layout and hit-testing", () => {
  it("lays sockets out in rows under the title, widgets after them", () => {
    const { scene } = graph();
    const blur = scene.nodes.get("blur")!;
    expect(inputPos(blur, "image")).toEqual([400, TITLE_H + PAD + ROW_H / 2]);
    expect(outputPos(blur, 0)).toEqual([400 + blur.w, TITLE_H + PAD + ROW_H / 2]);
    const wr = widgetRect(blur, "radius")!;
    expect(wr.y).toBeGreaterThanOrEqual(TITLE_H + PAD + ROW_H);
    expect(blur.h).toBeGreaterThanOrEqual(wr.y + wr.h);
  });

  it("finds the output socket under the pointer with a zoom-scaled radius", () => {
    const { scene } = graph();
    const load = scene.nodes.get("load")!;
    const [ox, oy] = outputPos(load, 1)!;
    const hit = hitTest(scene, ox + 3, oy - 3, 1);
    expect(hit).toMatchObject({ kind: "output", index: 1 });
    expect(hitPort(scene, ox + 30, oy, 10)).toBeNull();
    expect(hitPort(scene, ox + 30, oy, 10 / 0.25)).toMatchObject({ kind: "output" });
  });

  it("finds inputs, widget rows, title and body", () => {
    const { scene } = graph();
    const blur = scene.nodes.get("blur")!;
    const [ix, iy] = inputPos(blur, "image")!;
    expect(hitTest(scene, ix, iy, 1)).toMatchObject({ kind: "input", name: "image" });
    const wr = widgetRect(blur, "radius")!;
    expect(hitTest(scene, wr.x + wr.w / 2, wr.y + wr.h / 2, 1)).toMatchObject({ kind: "widget", name: "radius" });
    expect(hitTest(scene, 450, 10, 1)).toMatchObject({ kind: "title" });
    expect(hitTest(scene, 300, 10, 1)).toEqual({ kind: "none" });
  });

  it("does not hit sockets or widgets when zoomed out (they are not drawn)", () => {
    const { scene } = graph();
    const wr = widgetRect(scene.nodes.get("blur")!, "radius")!;
    expect(hitTest(scene, wr.x + 20, wr.y + 5, 0.2)).toMatchObject({ kind: "body" });
  });

  it("picks the topmost of overlapping nodes", () => {
    const { g, scene } = graph();
    g.addNode({ id: "over", type: "Loader", x: 420, y: 5, params: {} });
    expect(hitTest(scene, 450, 40, 1)).toMatchObject({ kind: "body", node: { id: "over" } });
    scene.raise(["blur"]);
    expect(hitTest(scene, 450, 40, 1)).toMatchObject({ node: { id: "blur" } });
  });

  it("follows moves: the spatial index is updated from the doc", () => {
    const { g, scene } = graph();
    g.moveNodes([["far", 0, 1000]]);
    expect(hitTest(scene, 10, 1040, 1)).toMatchObject({ node: { id: "far" } });
    expect(hitTest(scene, 5010, 5040, 1)).toEqual({ kind: "none" });
  });

  it("box selection returns the nodes touching the box, in any drag direction", () => {
    const { scene } = graph();
    const ids = (b: { x: number; y: number; w: number; h: number }) => nodesInBox(scene, b).map((n) => n.id).sort();
    expect(ids({ x: -10, y: -10, w: 700, h: 100 })).toEqual(["blur", "load"]);
    expect(ids({ x: 690, y: 90, w: -700, h: -100 })).toEqual(["blur", "load"]);
  });
});

describe("viewport culling with the spatial grid", () => {
  it("returns exactly the nodes intersecting the view, each once", () => {
    const { scene } = makeView();
    const grid = new SpatialGrid(256);
    const all: any[] = [];
    for (let i = 0; i < 400; i++) {
      const n = { id: `n${i}`, x: (i % 20) * 300, y: Math.floor(i / 20) * 200, w: 280, h: 150 } as never;
      all.push(n);
      grid.insert(n);
    }
    const view = { x: 1000, y: 900, w: 1200, h: 700 };
    const got = grid.query(view).map((n) => n.id).sort();
    const want = all.filter((n: any) => n.x <= view.x + view.w && n.x + n.w >= view.x && n.y <= view.y + view.h && n.y + n.h >= view.y)
      .map((n: any) => n.id).sort();
    expect(got).toEqual(want);
    expect(got.length).toBeGreaterThan(10);
    expect(grid.query({ x: -1e6, y: -1e6, w: 2e6, h: 2e6 })).toHaveLength(400);
    grid.remove("n0");
    expect(grid.query({ x: 0, y: 0, w: 10, h: 10 })).toHaveLength(0);
    expect(scene.nodes.size).toBe(0);
  });
});

describe("nodes of unknown types", () => {
  it("show their params as widget rows and read params from the doc", () => {
    const v = makeView();
    v.g.addNode({ id: "u", type: "NotRegistered", x: 0, y: 0, params: { alpha: 1, beta: "x" } });
    const n = v.scene.nodes.get("u")!;
    expect(n.inputs.map((p) => p.name)).toEqual(["alpha", "beta"]);
    expect(n.params).toEqual({ alpha: 1, beta: "x" });
    v.g.setParam("u", "alpha", 5);
    expect(v.scene.nodes.get("u")!.params.alpha).toBe(5);
  });

  it("known types read params lazily but see edits", () => {
    const v = makeView();
    v.g.addNode({ id: "b", type: "Blur", x: 0, y: 0, params: { radius: 2 } });
    v.g.setParam("b", "radius", 4.5);
    expect(v.scene.nodes.get("b")!.params).toEqual({ radius: 4.5 });
  });
});
