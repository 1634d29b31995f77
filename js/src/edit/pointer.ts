/**
 * Pointer and wheel input: pan, zoom, select, drag nodes and groups, resize nodes and
 * groups, connect sockets.
 *
 * One gesture at a time (`mode`). Dragging nodes shows them moving in this view at once
 * (`Scene.showLocal`) and writes their x/y at most every `DRAG_WRITE_MS` and on release (one
 * transaction each; one undo step for the drag): collaborators see the drag move, without
 * an update per pointer event. A connection is checked on drop and refused with a toast
 * naming both ports and types. Dragging from a connected input detaches the link and
 * carries it (drop elsewhere to reconnect, on empty canvas to disconnect).
 *
 * Resizing (the bottom-right grip of a node or group) and moving a group (by its title bar,
 * with every node lying inside it, as in ComfyUI) show live only in this view
 * (`Scene.showLocal`) and write the doc once on release: one transaction, one undo step.
 */
import { hitPort, hitTest, nodesInBox } from "../render/hittest";
import type { NodeView } from "../render/layout";
import type { LocalGeom } from "../scene";
import { screenToGraph, zoomAt } from "../render/view";
import { MIN_GROUP_H, MIN_GROUP_W, clampSize } from "./editor";
import type { Host } from "./host";

type Mode =
  | { kind: "idle" }
  | { kind: "pan"; sx: number; sy: number; panX: number; panY: number }
  | {
      kind: "drag"; gx: number; gy: number; start: Map<string, [number, number]>; moved: boolean;
      /** positions shown but not yet written, and when the doc was last written */
      unwritten: Array<[string, number, number]> | null; wroteAt: number;
    }
  | {
      kind: "group"; id: string; gx: number; gy: number; x: number; y: number;
      members: Map<string, [number, number]>; delta: [number, number] | null;
    }
  | { kind: "resize"; id: string; group: boolean; gx: number; gy: number; w: number; h: number; size: [number, number] | null }
  | { kind: "box"; gx: number; gy: number; additive: boolean }
  | { kind: "widget"; node: string; name: string }
  | { kind: "wire"; src: string; index: number; type: string; x0: number; y0: number }
  | { kind: "wire-in"; dst: string; input: string; type: string; x0: number; y0: number };

/** Longest a drag shows positions that collaborators do not see yet (ms). */
export const DRAG_WRITE_MS = 100;

export class PointerInput {
  private mode: Mode = { kind: "idle" };
  private dragTimer: ReturnType<typeof setTimeout> | null = null;
  private downAt: [number, number] = [0, 0];
  private cursor = "";

  constructor(private h: Host, private el: HTMLCanvasElement) {}

  local(e: { clientX: number; clientY: number }): [number, number] {
    const b = this.el.getBoundingClientRect();
    return [e.clientX - b.left, e.clientY - b.top];
  }

  down(e: PointerEvent): void {
    const [sx, sy] = this.local(e);
    this.downAt = [sx, sy];
    const v = this.h.r.view;
    if (e.button === 1 || (e.button === 0 && e.altKey)) {
      this.mode = { kind: "pan", sx, sy, panX: v.panX, panY: v.panY };
      return;
    }
    if (e.button !== 0) return;
    const [gx, gy] = screenToGraph(v, sx, sy);
    const hit = hitTest(this.h.scene, gx, gy, v.zoom);
    switch (hit.kind) {
      case "output":
        this.mode = { kind: "wire", src: hit.node.id, index: hit.index, type: hit.node.outputs[hit.index].type, x0: hit.x, y0: hit.y };
        break;
      case "input":
        this.startFromInput(hit.node.id, hit.name, hit.x, hit.y);
        break;
      case "widget":
        // Opened on release: the pointerdown's default focus change would close it at once.
        this.h.setSelection([hit.node.id]);
        this.mode = { kind: "widget", node: hit.node.id, name: hit.name };
        break;
      case "resize":
        this.startResize(hit.node, gx, gy);
        break;
      case "group-resize":
        this.startGroupResize(hit.id, gx, gy);
        break;
      case "title":
      case "body":
        this.startDrag(hit.node.id, gx, gy, e.shiftKey || e.ctrlKey || e.metaKey);
        break;
      case "group":
        this.startGroup(hit.id, gx, gy);
        break;
      default:
        if (e.shiftKey || e.ctrlKey || e.metaKey) this.mode = { kind: "box", gx, gy, additive: true };
        else this.mode = { kind: "pan", sx, sy, panX: v.panX, panY: v.panY };
    }
  }

  private startFromInput(dst: string, input: string, x: number, y: number): void {
    const existing = this.h.scene.edgeInto(dst, input);
    if (existing) {
      // Pick up the link: detach it and carry it from its source socket.
      const src = this.h.scene.nodes.get(existing.src);
      this.h.editor.disconnect(dst, input);
      const o = src?.outputs[existing.src_output];
      if (src && o) {
        this.mode = { kind: "wire", src: src.id, index: existing.src_output, type: o.type, x0: src.x + o.x, y0: src.y + o.y };
        return;
      }
    }
    const t = this.h.scene.nodes.get(dst)?.inputs.find((p) => p.name === input)?.type ?? "*";
    this.mode = { kind: "wire-in", dst, input, type: t, x0: x, y0: y };
  }

  private startDrag(id: string, gx: number, gy: number, toggle: boolean): void {
    const sel = this.h.r.selected;
    if (toggle) {
      const next = new Set(sel);
      if (next.has(id)) next.delete(id); else next.add(id);
      this.h.setSelection(next);
    } else if (!sel.has(id)) {
      this.h.setSelection([id]);
    }
    this.h.scene.raise(sel);
    const start = new Map<string, [number, number]>();
    for (const sid of sel) {
      const n = this.h.scene.nodes.get(sid);
      if (n) start.set(sid, [n.x, n.y]);
    }
    this.h.editor.undo.stopCapturing();
    this.mode = { kind: "drag", gx, gy, start, moved: false, unwritten: null, wroteAt: -Infinity };
  }

  private startGroup(id: string, gx: number, gy: number): void {
    const g = this.h.scene.groups.get(id);
    if (!g) return;
    const members = new Map<string, [number, number]>();
    for (const nid of this.h.editor.groupMembers(id)) {
      const n = this.h.scene.nodes.get(nid);
      if (n) members.set(nid, [n.x, n.y]);
    }
    this.h.editor.undo.stopCapturing();
    this.mode = { kind: "group", id, gx, gy, x: g.x, y: g.y, members, delta: null };
  }

  private startResize(n: NodeView, gx: number, gy: number): void {
    if (!this.h.r.selected.has(n.id)) this.h.setSelection([n.id]);
    this.mode = { kind: "resize", id: n.id, group: false, gx, gy, w: n.w, h: n.h, size: null };
  }

  private startGroupResize(id: string, gx: number, gy: number): void {
    const g = this.h.scene.groups.get(id);
    if (g) this.mode = { kind: "resize", id, group: true, gx, gy, w: g.w, h: g.h, size: null };
  }

  move(e: PointerEvent): void {
    const m = this.mode;
    if (m.kind === "idle") { this.hover(e); return; }
    const [sx, sy] = this.local(e);
    const v = this.h.r.view;
    const [gx, gy] = screenToGraph(v, sx, sy);
    if (m.kind === "pan") {
      this.h.r.setView({ zoom: v.zoom, panX: m.panX + sx - m.sx, panY: m.panY + sy - m.sy });
    } else if (m.kind === "drag") {
      const dx = gx - m.gx, dy = gy - m.gy;
      m.moved = true;
      const moves = [...m.start].map(([id, [x, y]]): [string, number, number] => [id, x + dx, y + dy]);
      m.unwritten = moves;
      this.h.scene.showLocal(moves.map(([id, x, y]) => [id, { x, y }]));
      const wait = m.wroteAt + DRAG_WRITE_MS - performance.now();
      if (wait <= 0) this.writeDrag(m);
      else this.dragTimer ??= setTimeout(() => { this.dragTimer = null; if (this.mode === m) this.writeDrag(m); }, wait);
    } else if (m.kind === "group") {
      this.showGroupMove(m, gx - m.gx, gy - m.gy);
    } else if (m.kind === "resize") {
      this.showResize(m, gx - m.gx, gy - m.gy);
    } else if (m.kind === "box") {
      this.h.r.overlay.box = { x: m.gx, y: m.gy, w: gx - m.gx, h: gy - m.gy };
      this.h.r.invalidate();
    } else if (m.kind === "wire" || m.kind === "wire-in") {
      this.h.r.overlay.wire = this.wireTo(m, gx, gy);
      this.h.r.invalidate();
    }
  }

  /** A resize grip under the idle pointer shows a resize cursor. */
  private hover(e: PointerEvent): void {
    const v = this.h.r.view;
    const [gx, gy] = screenToGraph(v, ...this.local(e));
    const kind = hitTest(this.h.scene, gx, gy, v.zoom).kind;
    const cursor = kind === "resize" || kind === "group-resize" ? "nwse-resize" : "";
    if (cursor !== this.cursor) this.el.style.cursor = this.cursor = cursor;
  }

  private showGroupMove(m: Extract<Mode, { kind: "group" }>, dx: number, dy: number): void {
    const g = this.h.scene.groups.get(m.id);
    if (!g) return;
    m.delta = [dx, dy];
    const nodes = [...m.members].map(([id, [x, y]]): [string, LocalGeom] => [id, { x: x + dx, y: y + dy }]);
    this.h.scene.showLocal(nodes, [[m.id, { ...g, x: m.x + dx, y: m.y + dy }]]);
  }

  private showResize(m: Extract<Mode, { kind: "resize" }>, dx: number, dy: number): void {
    const { scene } = this.h;
    if (m.group) {
      const g = scene.groups.get(m.id);
      if (!g) return;
      const [w, h] = m.size = clampSize(m.w + dx, m.h + dy, MIN_GROUP_W, MIN_GROUP_H);
      scene.showLocal([], [[m.id, { ...g, w, h }]]);
    } else {
      const n = scene.nodes.get(m.id);
      if (!n) return;
      const [w, h] = m.size = clampSize(m.w + dx, m.h + dy, n.minW, n.minH);
      scene.showLocal([[m.id, { w, h }]]);
    }
  }

  /** The dragged wire, red and dashed while over a socket it may not connect to. */
  private wireTo(m: Extract<Mode, { kind: "wire" | "wire-in" }>, gx: number, gy: number) {
    const over = hitPort(this.h.scene, gx, gy, 10 / this.h.r.view.zoom);
    const ok = !over || this.check(m, over) === null;
    return m.kind === "wire"
      ? { x0: m.x0, y0: m.y0, x1: gx, y1: gy, type: m.type, ok }
      : { x0: gx, y0: gy, x1: m.x0, y1: m.y0, type: m.type, ok };
  }

  private check(m: Extract<Mode, { kind: "wire" | "wire-in" }>, over: ReturnType<typeof hitPort>): string | null {
    if (!over) return null;
    if (m.kind === "wire" && over.kind === "input") return this.h.editor.connectProblem(m.src, m.index, over.node.id, over.name);
    if (m.kind === "wire-in" && over.kind === "output") return this.h.editor.connectProblem(over.node.id, over.index, m.dst, m.input);
    return null;
  }

  up(e: PointerEvent): void {
    const m = this.mode;
    this.mode = { kind: "idle" };
    const [sx, sy] = this.local(e);
    const [gx, gy] = screenToGraph(this.h.r.view, sx, sy);
    const clicked = Math.hypot(sx - this.downAt[0], sy - this.downAt[1]) < 4;
    if (m.kind === "pan" && clicked) this.h.setSelection([]);
    else if (m.kind === "widget" && clicked) this.openWidget(m.node, m.name);
    else if (m.kind === "drag") this.endDrag(m);
    else if (m.kind === "group" || m.kind === "resize") this.commit(m, clicked);
    else if (m.kind === "box") this.finishBox(m, gx, gy);
    else if (m.kind === "wire" || m.kind === "wire-in") this.finishWire(m, gx, gy);
    this.h.r.overlay.box = undefined;
    this.h.r.overlay.wire = undefined;
    this.h.r.invalidate();
  }

  /** Writes the drag's latest positions (one transaction), if any are not written yet. */
  private writeDrag(m: Extract<Mode, { kind: "drag" }>): void {
    if (!m.unwritten) return;
    this.h.editor.g.moveNodes(m.unwritten);
    m.unwritten = null;
    m.wroteAt = performance.now();
  }

  private endDrag(m: Extract<Mode, { kind: "drag" }>): void {
    if (this.dragTimer) { clearTimeout(this.dragTimer); this.dragTimer = null; }
    this.writeDrag(m);
    this.h.scene.clearLocal();
    this.h.editor.undo.stopCapturing();
  }

  /**
   * Writes a group move or a resize shown locally, then drops the local state. A click on a
   * group's title (half of a double-click to rename it) does not nudge the group.
   */
  private commit(m: Extract<Mode, { kind: "group" | "resize" }>, clicked: boolean): void {
    const ed = this.h.editor;
    if (m.kind === "group" && m.delta && !clicked) {
      const [dx, dy] = m.delta;
      ed.moveGroup(m.id, m.x + dx, m.y + dy, m.members, dx, dy);
    } else if (m.kind === "resize" && m.size) {
      if (m.group) ed.resizeGroup(m.id, ...m.size);
      else ed.resizeNode(m.id, ...m.size);
    }
    this.h.scene.clearLocal();
  }

  private openWidget(id: string, name: string): void {
    const n = this.h.scene.nodes.get(id);
    if (n) this.h.openWidget(n, name);
  }

  private finishBox(m: Extract<Mode, { kind: "box" }>, gx: number, gy: number): void {
    const inside = nodesInBox(this.h.scene, { x: m.gx, y: m.gy, w: gx - m.gx, h: gy - m.gy }).map((n) => n.id);
    this.h.setSelection(m.additive ? [...this.h.r.selected, ...inside] : inside);
  }

  private finishWire(m: Extract<Mode, { kind: "wire" | "wire-in" }>, gx: number, gy: number): void {
    const over = hitPort(this.h.scene, gx, gy, 12 / this.h.r.view.zoom);
    let res: { ok: boolean; reason?: string } | null = null;
    if (m.kind === "wire" && over?.kind === "input") res = this.h.editor.connect(m.src, m.index, over.node.id, over.name);
    if (m.kind === "wire-in" && over?.kind === "output") res = this.h.editor.connect(over.node.id, over.index, m.dst, m.input);
    if (res && !res.ok) this.h.toast(`Cannot connect: ${res.reason}`);
  }

  dblclick(e: MouseEvent): void {
    const [sx, sy] = this.local(e);
    const v = this.h.r.view;
    const [gx, gy] = screenToGraph(v, sx, sy);
    const hit = hitTest(this.h.scene, gx, gy, v.zoom);
    if (hit.kind === "title") this.h.editTitle(hit.node);
    else if (hit.kind === "group") this.h.editGroupTitle(hit.id);
    else if (hit.kind === "none") this.h.openAddPalette(sx, sy);
  }

  /**
   * Ctrl+wheel (trackpad pinch) and mouse wheel zoom; two-finger trackpad scroll pans; but
   * a canvas the user has not clicked into leaves the wheel to the notebook (see wheelMode).
   * Returns whether the canvas took the event.
   */
  wheel(e: WheelEvent, engaged: boolean): boolean {
    const mode = wheelMode(e, engaged);
    if (mode === "page") return false;
    e.preventDefault();
    const [sx, sy] = this.local(e);
    const v = this.h.r.view;
    if (mode === "pan") {
      this.h.r.setView({ zoom: v.zoom, panX: v.panX - e.deltaX, panY: v.panY - e.deltaY });
      return true;
    }
    const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    const k = e.ctrlKey ? 0.01 : 0.0025;
    this.h.r.setView(zoomAt(v, Math.exp(-e.deltaY * unit * k), sx, sy));
    return true;
  }
}

/**
 * What a wheel event over the canvas does. A canvas in a notebook must not trap the page's
 * scrolling: until the user clicks into it (`engaged`: focus inside the widget) a plain wheel
 * scrolls the notebook ("page"); Ctrl+wheel / pinch always zooms. Once engaged, a mouse wheel
 * zooms and a two-finger trackpad scroll pans.
 */
export function wheelMode(
  e: { ctrlKey: boolean; deltaMode: number; deltaX: number; deltaY: number }, engaged: boolean,
): "page" | "pan" | "zoom" {
  if (e.ctrlKey) return "zoom";
  if (!engaged) return "page";
  const trackpadPan = e.deltaMode === 0 && (e.deltaX !== 0 || Math.abs(e.deltaY) < 40);
  return trackpadPan ? "pan" : "zoom";
}
