import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BLUR_CLOSE_MS, Palette, placeBox } from "../src/ui/palette";
import type { PaletteItem } from "../src/ui/search";
import { FakeElement, fakeDocument } from "./helpers/dom";

const ITEMS: PaletteItem[] = [
  { id: "Loader", label: "Load Image", group: "image" },
  { id: "Blur", label: "Blur", group: "image/filters" },
];

function setup() {
  vi.stubGlobal("document", fakeDocument());
  const stage = new FakeElement("DIV");
  const root = new FakeElement("DIV");
  const button = new FakeElement("BUTTON"); // a toolbar button, outside the palette
  const closed: boolean[] = [];
  const keys: string[] = [];
  const palette = new Palette(stage as unknown as HTMLElement, (refocus) => {
    closed.push(refocus);
    if (refocus) root.focus();
  }, (e) => { keys.push(e.key); return e.key === "k"; });
  const el = palette.el as unknown as FakeElement;
  const input = el.find("vx-palette-input") as FakeElement;
  return { palette, el, input, root, button, closed, keys, stage };
}

/** What a click on `target` does to a focused palette box: blur first, then the click. */
function pressOn(input: FakeElement, target: FakeElement, click: () => void): void {
  target.focus();
  input.fire("blur", { relatedTarget: target });
  click();
}

describe("the palette", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => { vi.useRealTimers(); vi.unstubAllGlobals(); });

  it("opened again while open (toolbar + Node, double-click) stays open with focus in its box", () => {
    const { palette, input, button } = setup();
    palette.show("Command…", ITEMS, [10, 10], () => undefined);
    pressOn(input, button, () => palette.show("Add node…", ITEMS, [10, 10], () => undefined));
    vi.advanceTimersByTime(BLUR_CLOSE_MS * 3);
    expect(palette.open).toBe(true);
    expect(document.activeElement).toBe(input);
    expect(input.placeholder).toBe("Add node…"); // the new one replaced the old
  });

  it("opened right after Escape stays open", () => {
    const { palette, input, root } = setup();
    palette.show("Add node…", ITEMS, [10, 10], () => undefined);
    input.fire("keydown", { key: "Escape" });
    input.fire("blur", { relatedTarget: root }); // Escape gave focus back to the canvas
    expect(palette.open).toBe(false);
    expect(document.activeElement).toBe(root);
    palette.show("Add node…", ITEMS, [10, 10], () => undefined); // a double-click 50 ms later
    vi.advanceTimersByTime(BLUR_CLOSE_MS * 3);
    expect(palette.open).toBe(true);
    expect(document.activeElement).toBe(input);
  });

  it("closes a moment after focus moved elsewhere, without taking focus back", () => {
    const { palette, input, button, closed } = setup();
    palette.show("Add node…", ITEMS, [10, 10], () => undefined);
    pressOn(input, button, () => undefined);
    expect(palette.open).toBe(true);
    vi.advanceTimersByTime(BLUR_CLOSE_MS + 1);
    expect(palette.open).toBe(false);
    expect(closed).toEqual([false]);
    expect(document.activeElement).toBe(button); // the clicked button keeps focus
  });

  it("Enter picks, closes and gives focus back to the canvas", () => {
    const { palette, input, root, closed } = setup();
    const picked: string[] = [];
    palette.show("Add node…", ITEMS, [10, 10], (it) => picked.push(it.id));
    input.value = "blur";
    input.fire("input");
    input.fire("keydown", { key: "Enter" });
    expect(picked).toEqual(["Blur"]);
    expect(closed).toEqual([true]);
    expect(document.activeElement).toBe(root);
  });

  it("shows a hint row when nothing matches, naming what it lists", () => {
    const { palette, input, el } = setup();
    palette.show("Command or node…", ITEMS, [10, 10], () => undefined, { noun: "command or node" });
    input.value = "zzzz";
    input.fire("input");
    const hint = el.find("vx-palette-empty");
    expect(hint?.textContent).toBe("No command or node matches “zzzz”");
    expect(el.querySelectorAll(".vx-palette-item")).toHaveLength(0);
    input.value = "blu";
    input.fire("input");
    expect(el.find("vx-palette-empty")).toBeUndefined();
  });

  it("offers Ctrl+K typed in its box to the canvas (the command palette replaces it)", () => {
    const { palette, input, keys } = setup();
    palette.show("Add node…", ITEMS, [10, 10], () => undefined);
    input.fire("keydown", { key: "k", ctrlKey: true });
    input.fire("keydown", { key: "a" }); // plain typing stays in the box
    expect(keys).toEqual(["k"]);
  });

  it("is placed inside the stage after a double-click near its right or bottom edge", () => {
    const { palette, el, stage } = setup();
    Object.assign(stage, { clientWidth: 500, clientHeight: 300 });
    Object.assign(el, { offsetWidth: 300, offsetHeight: 200 });
    palette.show("Add node…", ITEMS, [480, 290], () => undefined);
    expect([el.style.left, el.style.top]).toEqual(["196px", "96px"]);
  });
});

describe("placeBox", () => {
  it("keeps a box inside the stage on both axes, with a margin", () => {
    expect(placeBox([480, 290], 300, 200, 500, 300)).toEqual({ x: 196, y: 96, w: 300, h: 200 });
    expect(placeBox([-50, -50], 300, 200, 500, 300)).toEqual({ x: 4, y: 4, w: 300, h: 200 });
    expect(placeBox([100, 50], 300, 200, 500, 300)).toEqual({ x: 100, y: 50, w: 300, h: 200 });
  });

  it("shrinks a box larger than the stage to fit it", () => {
    expect(placeBox([100, 100], 300, 360, 200, 150)).toEqual({ x: 4, y: 4, w: 192, h: 142 });
  });
});
