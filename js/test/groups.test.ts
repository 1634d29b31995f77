import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type * as Y from "yjs";
import type { CanvasApp } from "../src/app";
import { commandItems, runCommand } from "../src/commands";
import { MIN_GROUP_H, MIN_GROUP_W } from "../src/edit/editor";
import { hitTest } from "../src/render/hittest";
import type { GroupValue } from "../src/protocol";
import type { FakeElement } from "./helpers/dom";
import { drag, kernelField, stubBrowser, testView, updatesSent, type TestView } from "./helpers/host";
import { Relay } from "./helpers/relay";

/**
 * Nodes a and b in group "G" (made by "Group selected nodes"), c far outside it, and d
 * overlapping its right edge (not inside: it stays when the group moves, as in ComfyUI).
 */
function graph() {
  const relay = new Relay();
  const v = testView(relay);
  v.g.addNode({ id: "a", type: "Loader", x: 0, y: 0, params: {} });
  v.g.addNode({ id: "b", type: "Blur", x: 300, y: 0, params: {} });
  v.g.addNode({ id: "c", type: "KSampler", x: 0, y: 600, params: {} });
  const gid = v.editor.groupNodes(["a", "b"])!;
  const g = v.scene.groups.get(gid)!;
  v.g.addNode({ id: "d", type: "Blur", x: g.x + g.w - 40, y: 0, params: {} });
  v.editor.undo.clear();
  return { relay, v, gid, g };
}

function kernelGroup(relay: Relay, id: string): GroupValue | undefined {
  return relay.doc.getMap("groups").get(id) as GroupValue | undefined;
}

function kernelPos(relay: Relay, ids: string[]): Record<string, [unknown, unknown]> {
  return Object.fromEntries(ids.map((id) => [id, [kernelField(relay, id, "x"), kernelField(relay, id, "y")]]));
}

/** The open title editor's input. */
function titleInput(v: TestView): FakeElement {
  const input = v.stage.find("vx-title-editor");
  if (!input) throw new Error("no title editor open");
  return input;
}

beforeEach(stubBrowser);
afterEach(() => { vi.unstubAllGlobals(); });

describe("moving a group by its title bar", () => {
  it("moves the group and exactly the nodes inside it, live here, written once on release", () => {
    const { relay, v, gid, g } = graph();
    const before = kernelPos(relay, ["a", "b", "c", "d"]);
    expect(hitTest(v.scene, g.x + 30, g.y + 10, 1)).toEqual({ kind: "group", id: gid });
    const sent = updatesSent(v);
    drag(v, [g.x + 30, g.y + 10], [g.x + 150, g.y + 90], 6, false);
    expect(v.scene.nodes.get("b")).toMatchObject({ x: 420, y: 80 }); // live in this view
    expect(v.scene.groups.get(gid)).toMatchObject({ x: g.x + 120, y: g.y + 80 });
    expect(kernelPos(relay, ["a", "b", "c", "d"])).toEqual(before); // nothing written yet
    v.pointer.up({ clientX: g.x + 150, clientY: g.y + 90, button: 0 } as PointerEvent);
    expect(updatesSent(v) - sent).toBe(1);
    expect(kernelPos(relay, ["a", "b", "c", "d"])).toEqual({ a: [120, 80], b: [420, 80], c: before.c, d: before.d });
    expect(kernelGroup(relay, gid)).toEqual({ ...g, x: g.x + 120, y: g.y + 80 });
  });

  it("is one undo step that puts the group and its nodes back", () => {
    const { relay, v, gid, g } = graph();
    const before = kernelPos(relay, ["a", "b", "c", "d"]);
    drag(v, [g.x + 30, g.y + 10], [g.x - 70, g.y + 200], 30);
    v.editor.undo.undo();
    expect(kernelPos(relay, ["a", "b", "c", "d"])).toEqual(before);
    expect(kernelGroup(relay, gid)).toEqual(g);
    expect(v.scene.groups.get(gid)).toEqual(g);
    expect(v.editor.undo.canUndo()).toBe(false);
  });

  it("a click on the title (half a double-click) moves nothing", () => {
    const { relay, v, g } = graph();
    const sent = updatesSent(v);
    drag(v, [g.x + 30, g.y + 10], [g.x + 31, g.y + 11], 1);
    expect(updatesSent(v)).toBe(sent);
    expect(kernelField(relay, "a", "x")).toBe(0);
  });
});

describe("resizing a group by its corner grip", () => {
  it("changes only the group's w/h, never below the minimum, one undo step each", () => {
    const { relay, v, gid, g } = graph();
    const corner: [number, number] = [g.x + g.w - 3, g.y + g.h - 3];
    expect(hitTest(v.scene, ...corner, 1)).toEqual({ kind: "group-resize", id: gid });
    drag(v, corner, [corner[0] + 50, corner[1] + 40]);
    expect(kernelGroup(relay, gid)).toEqual({ ...g, w: g.w + 50, h: g.h + 40 });
    expect(kernelPos(relay, ["a", "b"])).toEqual({ a: [0, 0], b: [300, 0] });
    drag(v, [corner[0] + 50, corner[1] + 40], [-5000, -5000]);
    expect(kernelGroup(relay, gid)).toMatchObject({ x: g.x, y: g.y, w: MIN_GROUP_W, h: MIN_GROUP_H });
    v.editor.undo.undo();
    expect(kernelGroup(relay, gid)).toEqual({ ...g, w: g.w + 50, h: g.h + 40 });
    v.editor.undo.undo();
    expect(kernelGroup(relay, gid)).toEqual(g);
  });
});

describe("renaming a group", () => {
  it("double-click on its title opens an editor over the title bar; Enter writes the title", () => {
    const { relay, v, gid, g } = graph();
    v.pointer.dblclick({ clientX: g.x + 30, clientY: g.y + 10 } as MouseEvent);
    expect(v.overlays.current).toEqual({ group: gid });
    const input = titleInput(v);
    expect(input.value).toBe("Group");
    expect(input.focused).toBe(true);
    const wrap = input.parent!;
    expect([wrap.style.left, wrap.style.top]).toEqual([`${g.x}px`, `${g.y}px`]);
    input.value = "  Samplers ";
    input.fire("keydown", { key: "Enter" });
    expect(kernelGroup(relay, gid)).toEqual({ ...g, title: "Samplers" });
    expect(v.overlays.current).toBeNull();
    expect(v.stage.children).toHaveLength(0);
    v.editor.undo.undo();
    expect(kernelGroup(relay, gid)?.title).toBe("Group");
  });

  it("Escape leaves the title unchanged (also when the closing input then blurs)", () => {
    const { relay, v, gid, g } = graph();
    v.pointer.dblclick({ clientX: g.x + 30, clientY: g.y + 10 } as MouseEvent);
    const input = titleInput(v);
    input.value = "Nope";
    input.fire("keydown", { key: "Escape" });
    input.fire("blur");
    expect(kernelGroup(relay, gid)?.title).toBe("Group");
    expect(v.overlays.current).toBeNull();
  });

  it("blur commits, and an empty title is not written", () => {
    const { relay, v, gid, g } = graph();
    v.pointer.dblclick({ clientX: g.x + 30, clientY: g.y + 10 } as MouseEvent);
    titleInput(v).value = "Blurred";
    titleInput(v).fire("blur");
    expect(kernelGroup(relay, gid)?.title).toBe("Blurred");
    v.pointer.dblclick({ clientX: g.x + 30, clientY: g.y + 10 } as MouseEvent);
    titleInput(v).value = "   ";
    titleInput(v).fire("keydown", { key: "Enter" });
    expect(kernelGroup(relay, gid)?.title).toBe("Blurred");
  });

  it("the editor closes when another user deletes the group", () => {
    const { relay, v, gid, g } = graph();
    v.pointer.dblclick({ clientX: g.x + 30, clientY: g.y + 10 } as MouseEvent);
    relay.edit((d) => (d.getMap("groups") as Y.Map<unknown>).delete(gid));
    v.overlays.reposition(v.r.view);
    expect(v.overlays.current).toBeNull();
  });

  it("'Rename group' in the command palette edits the innermost group around the selection", () => {
    const { relay, v, gid } = graph();
    expect(commandItems().find((i) => i.id === "rename-group")).toMatchObject({ label: "Rename group" });
    const inner = v.editor.groupNodes(["b"], "Inner")!;
    const app = v.host as unknown as CanvasApp;
    v.host.setSelection(["b"]);
    runCommand(app, "rename-group");
    expect(v.overlays.current).toEqual({ group: inner });
    titleInput(v).value = "Blurs";
    titleInput(v).fire("keydown", { key: "Enter" });
    expect(kernelGroup(relay, inner)?.title).toBe("Blurs");
    v.host.setSelection(["a"]);
    runCommand(app, "rename-group");
    expect(v.overlays.current).toEqual({ group: gid });
    titleInput(v).fire("keydown", { key: "Escape" });
    v.host.setSelection(["c"]);
    runCommand(app, "rename-group");
    expect(v.overlays.current).toBeNull();
    expect(v.toasts).toEqual(["Select a node inside a group to rename the group"]);
  });
});
