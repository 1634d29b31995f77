/**
 * A test/debug handle on the root element: `el.querySelector('.vx-root').__vortex`.
 * Documented in docs/canvas-protocol.md ("The test hook"); the browser e2e tests use it to find
 * socket positions for drag-to-connect and to wait for the accessible list.
 */
import type { CanvasApp } from "./app";
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
  };
  (app.root as HTMLDivElement & { __vortex?: VortexHook }).__vortex = hook;
}

function onScreen(v: Viewport, r: Rect | undefined): Rect | null {
  if (!r) return null;
  const [x, y] = graphToScreen(v, r.x, r.y);
  return { x, y, w: r.w * v.zoom, h: r.h * v.zoom };
}
