/**
 * Editing commands on the graph, each one transaction with the view's origin, and
 * per-user undo/redo (a Y.UndoManager tracking only this view's origin, so undo never
 * reverts another user's or the kernel's edit).
 *
 * Gestures that write once on release (resize, group move) call `stopCapturing` before and
 * after their transaction, so each is exactly one undo step.
 *
 * A node added from the palette, or a pasted block, lands on the free spot nearest to where
 * it was asked for (`render/place.ts`), never on top of another node.
 */
import * as Y from "yjs";
import { GraphDoc, makeNodeMap, type NodeData } from "../docmodel";
import { MODE_ALWAYS, edgeKey, newNodeId, type EdgeValue, type NodeSpecJson } from "../protocol";
import { whyIncompatible } from "../ports";
import type { Scene } from "../scene";
import { PREVIEW_H, layoutNode, type NodeView } from "../render/layout";
import { freeSpot } from "../render/place";
import { boundsOf } from "../render/view";
import { contains, type Rect } from "../render/spatial";
import { instantiate, parse, serialize } from "./clipboard";

export interface ConnectResult { ok: boolean; reason?: string }

/** Smallest group a resize leaves (graph units): room for a short title and a grip. */
export const MIN_GROUP_W = 100;
export const MIN_GROUP_H = 60;

/** A size no smaller than the minimum, rounded to whole graph units. */
export function clampSize(w: number, h: number, minW: number, minH: number): [number, number] {
  return [Math.round(Math.max(minW, w)), Math.round(Math.max(minH, h))];
}

export class Editor {
  readonly undo: Y.UndoManager;

  constructor(readonly g: GraphDoc, readonly scene: Scene) {
    this.undo = new Y.UndoManager([g.nodes, g.edges, g.groups], {
      trackedOrigins: new Set([g.origin]),
      captureTimeout: 400,
    });
  }

  /** Default params of a node type from its spec. */
  static defaults(spec: NodeSpecJson | undefined): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const p of spec?.inputs ?? []) {
      if (p.default !== undefined) out[p.name] = p.default;
      else if (p.choices?.length) out[p.name] = p.choices[0];
    }
    return out;
  }

  /** Adds a node of `type` on the free spot nearest to (x, y); returns its id. */
  addNode(type: string, x: number, y: number): string {
    const spec = this.scene.spec(type);
    const node: NodeData = { id: newNodeId(), type, x, y, params: Editor.defaults(spec) };
    const { w, h } = this.boxOf(node);
    [node.x, node.y] = this.spotFor(w, h, x, y);
    this.undo.stopCapturing();
    return this.g.addNode(node);
  }

  /** The room a node takes on the canvas: its drawn size, plus the preview an output node grows. */
  boxOf(n: NodeData): { w: number; h: number } {
    const v = layoutNode(n, this.scene.spec(n.type), false, n.params);
    return { w: v.w, h: v.h + this.previewRoom(v) };
  }

  /** Height an output node will still grow when a run gives it a preview (0 once it has room). */
  readonly previewRoom = (n: NodeView): number =>
    n.spec?.output_node && n.h < n.minH + PREVIEW_H && !this.scene.withPreview.has(n.id) ? PREVIEW_H : 0;

  private spotFor(w: number, h: number, x: number, y: number): [number, number] {
    return freeSpot(this.scene.grid, this.scene.nodes.values(), w, h, x, y, this.previewRoom);
  }

  /** Null when output `index` of `src` may feed input `input` of `dst`, else the reason. */
  connectProblem(src: string, index: number, dst: string, input: string): string | null {
    const s = this.scene.nodes.get(src), t = this.scene.nodes.get(dst);
    if (!s || !t) return `node ${s ? dst : src} does not exist`;
    const out = s.outputs[index], inp = t.inputs.find((p) => p.name === input);
    if (!out) return `${src} has no output ${index}`;
    if (!inp) return `${dst} has no input ${input}`;
    return whyIncompatible(src, out.name, out.type, dst, input, inp.type);
  }

  /** Checks types and links output `index` of `src` into input `input` of `dst`. */
  connect(src: string, index: number, dst: string, input: string): ConnectResult {
    const reason = this.connectProblem(src, index, dst, input);
    if (reason) return { ok: false, reason };
    this.undo.stopCapturing();
    this.g.connect({ src, src_output: index, dst, dst_input: input });
    return { ok: true };
  }

  disconnect(dst: string, input: string): void {
    this.undo.stopCapturing();
    this.g.disconnect(dst, input);
  }

  deleteNodes(ids: Iterable<string>): void {
    this.undo.stopCapturing();
    this.g.deleteNodes(ids);
  }

  /**
   * ComfyUI's mute / bypass toggle: puts the nodes in `mode`, or back to 0 (always) when all
   * of them are in it already. One transaction, so one undo step. Returns the mode written,
   * or null when none of `ids` is a node.
   */
  toggleMode(ids: Iterable<string>, mode: number): number | null {
    const nodes = [...ids].filter((id) => this.scene.nodes.has(id));
    if (!nodes.length) return null;
    const target = nodes.every((id) => this.scene.nodes.get(id)?.mode === mode) ? MODE_ALWAYS : mode;
    this.undo.stopCapturing();
    this.g.setModes(nodes, target);
    return target;
  }

  copy(ids: Iterable<string>): string | null {
    const nodes = [...ids].map((id) => this.g.readNode(id)).filter((n): n is NodeData => n !== null);
    if (!nodes.length) return null;
    return serialize(nodes, [...this.scene.edges.values()]);
  }

  /** Pastes clipboard text with its top-left at the free spot nearest (x, y); returns the new ids. */
  paste(text: string | null, x: number, y: number): string[] {
    const data = parse(text);
    if (!data || !data.nodes.length) return [];
    const b = boundsOf(data.nodes.map((n) => ({ x: n.x, y: n.y, ...this.boxOf(n) }))) as Rect;
    const fresh = instantiate(data, ...this.spotFor(b.w, b.h, x, y));
    this.undo.stopCapturing();
    this.g.transact(() => {
      for (const n of fresh.nodes) this.g.nodes.set(n.id, makeNodeMap(n));
      for (const e of fresh.edges) this.g.edges.set(edgeKey(e.dst, e.dst_input), e);
    });
    return fresh.nodes.map((n) => n.id);
  }

  /** A group (frame) around the selected nodes. */
  groupNodes(ids: Iterable<string>, title = "Group"): string | null {
    const b = boundsOf([...ids].flatMap((id) => this.scene.nodes.get(id) ?? []));
    if (!b) return null;
    const id = "g" + newNodeId().slice(1);
    this.undo.stopCapturing();
    this.g.setGroup(id, { title, x: b.x - 16, y: b.y - 40, w: b.w + 32, h: b.h + 56 });
    return id;
  }

  /** Nodes lying entirely inside a group: they move with it. */
  groupMembers(id: string): string[] {
    const g = this.scene.groups.get(id);
    if (!g) return [];
    return [...this.scene.nodes.values()].filter((n) => contains(g, n)).map((n) => n.id);
  }

  /** Moves a group and its `members` (start positions) by (dx, dy): one transaction, one undo step. */
  moveGroup(id: string, x: number, y: number, members: Map<string, [number, number]>, dx: number, dy: number): void {
    const g = this.g.groups.get(id);
    if (!g) return;
    this.undo.stopCapturing();
    this.g.transact(() => {
      this.g.groups.set(id, { ...g, x, y });
      for (const [nid, [nx, ny]] of members) {
        const m = this.g.nodes.get(nid);
        m?.set("x", nx + dx);
        m?.set("y", ny + dy);
      }
    });
    this.undo.stopCapturing();
  }

  /** The innermost group holding one of `ids` (the group a selection is in), or null. */
  groupAround(ids: Iterable<string>): string | null {
    const sel = new Set(ids);
    let best: string | null = null, bestArea = Infinity;
    for (const [gid, g] of this.scene.groups) {
      if (g.w * g.h < bestArea && this.groupMembers(gid).some((n) => sel.has(n))) {
        best = gid;
        bestArea = g.w * g.h;
      }
    }
    return best;
  }

  renameGroup(id: string, title: string): void {
    this.writeGroup(id, { title });
  }

  /** Sets a node's size, never below its natural size (see layout.ts); one undo step. */
  resizeNode(id: string, w: number, h: number): void {
    const n = this.scene.nodes.get(id);
    if (!n) return;
    const [cw, ch] = clampSize(w, h, n.minW, n.minH);
    this.undo.stopCapturing();
    this.g.setSize(id, cw, ch);
    this.undo.stopCapturing();
  }

  resizeGroup(id: string, w: number, h: number): void {
    const [cw, ch] = clampSize(w, h, MIN_GROUP_W, MIN_GROUP_H);
    this.writeGroup(id, { w: cw, h: ch });
  }

  /** Changes fields of the doc's group (not the scene's: that may show a gesture's state). */
  private writeGroup(id: string, fields: Partial<Rect & { title: string }>): void {
    const g = this.g.groups.get(id);
    if (!g) return;
    this.undo.stopCapturing();
    this.g.setGroup(id, { ...g, ...fields });
    this.undo.stopCapturing();
  }

  edgesBetween(ids: Set<string>): EdgeValue[] {
    return [...this.scene.edges.values()].filter((e) => ids.has(e.src) && ids.has(e.dst));
  }

  destroy(): void {
    this.undo.destroy();
  }
}
