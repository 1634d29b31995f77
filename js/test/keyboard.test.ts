import { describe, expect, it, vi } from "vitest";
import { Editor } from "../src/edit/editor";
import type { Host } from "../src/edit/host";
import { handleKey } from "../src/edit/keys";
import { makeView } from "./helpers/fixtures";

function host() {
  const v = makeView();
  const editor = new Editor(v.g, v.scene);
  const r = {
    selected: new Set<string>(), visible: [] as never[], view: { zoom: 1, panX: 0, panY: 0 }, width: 800, height: 600,
    setView(view: { zoom: number; panX: number; panY: number }) { this.view = view; },
    invalidate() {},
  };
  const h = {
    r, scene: v.scene, editor, toast: vi.fn(), openAddPalette: vi.fn(), openCommandPalette: vi.fn(),
    openWidget: vi.fn(), editTitle: vi.fn(), fit: vi.fn(), copy: vi.fn(), paste: vi.fn(), group: vi.fn(),
    setSelection(ids: Iterable<string>) { r.selected = new Set(ids); },
  };
  return { h: h as unknown as Host & typeof h, ...v, editor };
}

const key = (k: string, mods: Partial<KeyboardEvent> = {}) => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, ...mods }) as KeyboardEvent;

describe("keyboard on the focused canvas", () => {
  it("Tab walks the nodes in reading order, then lets focus leave", () => {
    const { h, g } = host();
    g.addNode({ id: "a", type: "Loader", x: 0, y: 0, params: {} });
    g.addNode({ id: "b", type: "Blur", x: 300, y: 0, params: {} });
    expect(handleKey(h, key("Tab"))).toBe(true);
    expect([...h.r.selected]).toEqual(["a"]);
    expect(handleKey(h, key("Tab"))).toBe(true);
    expect([...h.r.selected]).toEqual(["b"]);
    expect(handleKey(h, key("Tab"))).toBe(false); // not consumed: no keyboard trap
    expect(h.r.selected.size).toBe(0);
  });

  it("arrows pan without a selection and move it with one", () => {
    const { h, g } = host();
    g.addNode({ id: "a", type: "Loader", x: 0, y: 0, params: {} });
    g.addNode({ id: "b", type: "Blur", x: 300, y: 0, params: {} });
    handleKey(h, key("ArrowRight"));
    expect(h.r.view.panX).toBeLessThan(0);
    h.setSelection(["a"]);
    handleKey(h, key("ArrowRight"));
    expect([...h.r.selected]).toEqual(["b"]);
  });

  it("shortcuts: Delete, Ctrl+Z / Ctrl+Shift+Z, +/- zoom, Ctrl+K, Ctrl+G", () => {
    const { h, g, scene } = host();
    g.addNode({ id: "a", type: "Loader", x: 0, y: 0, params: {} });
    h.setSelection(["a"]);
    handleKey(h, key("Delete"));
    expect(scene.nodes.has("a")).toBe(false);
    handleKey(h, key("z", { ctrlKey: true }));
    expect(scene.nodes.has("a")).toBe(true);
    handleKey(h, key("Z", { ctrlKey: true, shiftKey: true }));
    expect(scene.nodes.has("a")).toBe(false);
    handleKey(h, key("+"));
    expect(h.r.view.zoom).toBeCloseTo(1.2);
    handleKey(h, key("k", { metaKey: true }));
    expect(h.openCommandPalette).toHaveBeenCalled();
    handleKey(h, key("g", { ctrlKey: true }));
    expect(h.group).toHaveBeenCalled();
    expect(handleKey(h, key("q"))).toBe(false);
  });
});

describe("the wheel over a canvas in a notebook", () => {
  it("scrolls the notebook until the canvas is clicked into, then zooms or pans it", async () => {
    const { wheelMode } = await import("../src/edit/pointer");
    const mouse = { ctrlKey: false, deltaMode: 0, deltaX: 0, deltaY: 100 };
    const trackpad = { ctrlKey: false, deltaMode: 0, deltaX: 3, deltaY: 8 };
    expect(wheelMode(mouse, false)).toBe("page"); // was: always zoom (the notebook could not scroll past)
    expect(wheelMode(trackpad, false)).toBe("page");
    expect(wheelMode({ ...mouse, ctrlKey: true }, false)).toBe("zoom"); // pinch / Ctrl+wheel
    expect(wheelMode(mouse, true)).toBe("zoom");
    expect(wheelMode({ ...mouse, deltaMode: 1, deltaY: 3 }, true)).toBe("zoom");
    expect(wheelMode(trackpad, true)).toBe("pan");
  });
});
