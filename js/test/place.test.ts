import { describe, expect, it } from "vitest";
import { Editor } from "../src/edit/editor";
import { GAP, MAX_RING, STEP, freeSpot } from "../src/render/place";
import { intersects, type Rect } from "../src/render/spatial";
import { makeView } from "./helpers/fixtures";

function overlapping(rects: Array<Rect & { id: string }>): string[] {
  const out: string[] = [];
  for (const a of rects) for (const b of rects) if (a.id < b.id && intersects(a, b)) out.push(`${a.id}/${b.id}`);
  return out;
}

function editor() {
  const v = makeView();
  return { ...v, ed: new Editor(v.g, v.scene) };
}

describe("where a new node goes", () => {
  it("stays where it was asked for when that spot is free", () => {
    const { ed, scene } = editor();
    ed.addNode("Loader", 0, 0);
    const id = ed.addNode("Blur", 600, 0);
    expect([scene.nodes.get(id)?.x, scene.nodes.get(id)?.y]).toEqual([600, 0]);
  });

  it("moves to the nearest free spot when the asked spot is taken, never on top of a node", () => {
    const { ed, scene } = editor();
    const ids = [ed.addNode("Loader", 0, 0)];
    for (let i = 0; i < 12; i++) ids.push(ed.addNode("Blur", 10, 10)); // the same spot, again and again
    const boxes = ids.map((id) => ({ ...(scene.nodes.get(id) as Rect), id }));
    expect(overlapping(boxes)).toEqual([]);
    const second = scene.nodes.get(ids[1]) as Rect;
    expect(Math.hypot(second.x - 10, second.y - 10)).toBeLessThan(260); // near, not far away
  });

  it("keeps room for the preview an output node grows after a run", () => {
    const v = makeView(undefined, {
      Save: { type: "Save", category: "image", output_node: true, inputs: [], outputs: [] },
      Blur: { type: "Blur", category: "image", inputs: [], outputs: [] },
    });
    const ed = new Editor(v.g, v.scene);
    const save = v.scene.nodes.get(ed.addNode("Save", 0, 0)) as Rect;
    const below = v.scene.nodes.get(ed.addNode("Blur", 0, save.h + 30)) as Rect;
    expect(intersects(below, { ...save, h: save.h + 140 })).toBe(false);
  });

  it("pastes a block of nodes on a free spot as a whole", () => {
    const { ed, scene } = editor();
    const a = ed.addNode("Loader", 0, 0), b = ed.addNode("Blur", 300, 0);
    ed.g.connect({ src: a, src_output: 0, dst: b, dst_input: "image" });
    const text = ed.copy([a, b]);
    const pasted = ed.paste(text, 20, 20);
    expect(pasted).toHaveLength(2);
    const boxes = [...scene.nodes.values()].map((n) => ({ x: n.x, y: n.y, w: n.w, h: n.h, id: n.id }));
    expect(overlapping(boxes)).toEqual([]);
    const [pa, pb] = pasted.map((id) => scene.nodes.get(id) as Rect);
    expect(pb.x - pa.x).toBe(300); // the block keeps its shape
  });

  it("searches outward and falls back to the right of every node when nothing near is free", () => {
    const { ed, scene } = editor();
    ed.addNode("Loader", 0, 0);
    const far = (MAX_RING + 2) * STEP;
    // a wall of nodes around the asked spot, wider than the search
    for (let x = -far; x <= far; x += 200) for (let y = -far; y <= far; y += 60) {
      ed.g.addNode({ id: `w${x}_${y}`, type: "Blur", x, y, params: {} });
    }
    const [x, y] = freeSpot(scene.grid, scene.nodes.values(), 180, 60, 0, 0);
    const right = Math.max(...[...scene.nodes.values()].map((n) => n.x + n.w));
    expect(x).toBe(right + 70);
    expect(y).toBe(Math.min(...[...scene.nodes.values()].map((n) => n.y)));
    expect(GAP).toBeGreaterThan(0);
  });
});
