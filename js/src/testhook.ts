/**
 * A test/debug handle on the root element: `el.querySelector('.vx-root').__vortex`.
 * Documented in docs/canvas-protocol.md ("The test hook"); the browser e2e tests use it to find
 * socket positions for drag-to-connect and to wait for the accessible list.
 */
import type { CanvasApp } from "./app";
import type { RemoteUser } from "./presence";
import type { Rect } from "./render/spatial";
import { graphToScreen, screenToGraph, type Viewport } from "./render/view";

export interface VortexHook {
  doc: unknown;
  readonly view: { zoom: number; panX: number; panY: number };
  screenToGraph(x: number, y: number): [number, number];
  graphToScreen(x: number, y: number): [number, number];
  /** Screen position (CSS px relative to the canvas) of a socket; null when unknown. */
  portPosition(node: string, side: "input" | "output", port: string | number): [number, number] | null;
  nodeRect(node: string): Rect | null;
  /** Screen rectangle of a group (CSS px relative to the canvas); null when unknown. */
  groupRect(group: string): Rect | null;
  selection(): string[];
  setView(zoom: number, panX: number, panY: number): void;
  fit(): void;
  /** Draws now and brings the accessible list up to date. */
  flush(): void;
  states(): Record<string, string>;
  synced(): boolean;
  frames(): number;
  /** Draws one frame now (benchmarks force a redraw per animation frame). */
  redraw(): void;
  drawStats(): { frames: number; lastDrawMs: number; lastDrawAt: number; visible: number; nodes: number; syncApplyMs: number };
  /** The other people on this graph as this view sees them (presence). */
  users(): RemoteUser[];
  /** What the overlay draws of them: node -> colour of their selection; cursors; edited widgets. */
  overlay(): { remote: Record<string, string>; cursors: Array<{ x: number; y: number; color: string; name: string }>;
    editing: Record<string, { param: string; color: string; name: string }> };
  /** This view's own identity as published. */
  me(): { name: string; color: string };
  /** A param edit as the widget editor makes it (this view's origin: undoable here only). */
  setParam(node: string, name: string, value: unknown): void;
  /** Edits as the canvas makes them (this view's origin). */
  moveNode(node: string, x: number, y: number): void;
  connect(src: string, output: number, dst: string, input: string): void;
  disconnect(dst: string, input: string): void;
  addNode(id: string, type: string, x: number, y: number): void;
  deleteNode(id: string): void;
  undo(): void;
  redo(): void;
}

export function exposeTestHook(app: CanvasApp): void {
  const hook: VortexHook = {
    doc: app.doc,
    get view() { return { ...app.r.view }; },
    screenToGraph: (x, y) => screenToGraph(app.r.view, x, y),
    graphToScreen: (x, y) => graphToScreen(app.r.view, x, y),
    portPosition(node, side, port) {
      const n = app.scene.nodes.get(node);
      if (!n) return null;
      const p = side === "input"
        ? n.inputs.find((q, i) => q.name === port || i === port)
        : n.outputs.find((q, i) => q.name === port || i === port);
      return p ? graphToScreen(app.r.view, n.x + p.x, n.y + p.y) : null;
    },
    nodeRect: (node) => onScreen(app.r.view, app.scene.nodes.get(node)),
    groupRect: (group) => onScreen(app.r.view, app.scene.groups.get(group)),
    selection: () => [...app.r.selected],
    setView: (zoom, panX, panY) => app.r.setView({ zoom, panX, panY }),
    fit: () => app.fit(),
    flush() { app.r.draw(); app.list.update(true); },
    states: () => Object.fromEntries(app.run.states),
    synced: () => app.provider.synced,
    frames: () => app.r.frames,
    redraw: () => app.r.draw(),
    drawStats: () => ({
      frames: app.r.frames, lastDrawMs: app.r.lastDrawMs, lastDrawAt: app.r.lastDrawAt,
      visible: app.r.visible.length, nodes: app.scene.nodes.size, syncApplyMs: app.provider.applyMs,
    }),
    users: () => app.presence.users(),
    overlay: () => ({
      remote: Object.fromEntries(app.r.overlay.remote ?? []),
      cursors: [...(app.r.overlay.cursors ?? [])],
      editing: Object.fromEntries(app.r.overlay.editing ?? []),
    }),
    me: () => ({ name: app.presence.name, color: app.presence.color }),
    setParam: (node, name, value) => app.gdoc.setParam(node, name, value),
    moveNode: (node, x, y) => app.gdoc.moveNodes([[node, x, y]]),
    connect: (src, output, dst, input) => app.editor.connect(src, output, dst, input),
    disconnect: (dst, input) => app.editor.disconnect(dst, input),
    addNode: (id, type, x, y) => { app.gdoc.addNode({ id, type, x, y, params: {} }); },
    deleteNode: (id) => app.editor.deleteNodes([id]),
    undo: () => app.editor.undo.undo(),
    redo: () => app.editor.undo.redo(),
  };
  (app.root as HTMLDivElement & { __vortex?: VortexHook }).__vortex = hook;
}

function onScreen(v: Viewport, r: Rect | undefined): Rect | null {
  if (!r) return null;
  const [x, y] = graphToScreen(v, r.x, r.y);
  return { x, y, w: r.w * v.zoom, h: r.h * v.zoom };
}
