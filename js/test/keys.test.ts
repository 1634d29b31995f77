import { describe, expect, it } from "vitest";
import { neighbor, readingOrder } from "../src/edit/keys";
import { instantiate, parse, serialize } from "../src/edit/clipboard";
import type { NodeView } from "../src/render/layout";

const node = (id: string, x: number, y: number) => ({ id, x, y, w: 100, h: 60 }) as NodeView;

describe("keyboard navigation between nodes", () => {
  const nodes = [node("c", 0, 0), node("r", 300, 20), node("d", 10, 300), node("far", 300, 600)];

  it("arrows go to the nearest node in that direction", () => {
    expect(neighbor(nodes, nodes[0], "right")?.id).toBe("r");
    expect(neighbor(nodes, nodes[0], "down")?.id).toBe("d");
    expect(neighbor(nodes, nodes[0], "left")).toBeNull();
    expect(neighbor(nodes, nodes[1], "left")?.id).toBe("c");
  });

  it("Tab order is reading order", () => {
    expect(readingOrder(nodes).map((n) => n.id)).toEqual(["c", "r", "d", "far"]);
  });
});

describe("clipboard JSON", () => {
  it("round-trips and ignores text that is not ours", () => {
    const text = serialize([{ id: "a", type: "T", x: 5, y: 5, params: { k: 1 } }], []);
    expect(parse(text)?.nodes[0].params).toEqual({ k: 1 });
    expect(parse("hello")).toBeNull();
    expect(parse('{"kind":"other"}')).toBeNull();
  });

  it("keeps only edges inside the copied set and remaps ids", () => {
    const text = serialize(
      [{ id: "a", type: "T", x: 10, y: 20, params: {} }, { id: "b", type: "T", x: 110, y: 20, params: {} }],
      [{ src: "a", src_output: 0, dst: "b", dst_input: "i" }, { src: "z", src_output: 0, dst: "a", dst_input: "i" }],
    );
    const d = instantiate(parse(text)!, 0, 0);
    expect(d.edges).toHaveLength(1);
    expect(d.nodes.map((n) => [n.x, n.y])).toEqual([[0, 0], [100, 0]]);
    expect(d.edges[0]).toMatchObject({ src: d.nodes[0].id, dst: d.nodes[1].id });
    expect(d.nodes[0].id).not.toBe("a");
  });
});
