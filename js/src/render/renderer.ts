/**
 * The frame loop: draws the scene on one <canvas>, only when something changed.
 *
 * `invalidate()` schedules one requestAnimationFrame; many invalidations in a frame cost
 * one draw. The backing store follows devicePixelRatio; all drawing is in graph units under
 * a single transform, so culling is one grid query for the visible rectangle.
 *
 * Paint order: groups, node bodies, wires, then (LOD 2) sockets, then the overlay. Wires are
 * drawn over the nodes so a wire that passes behind a node stays visible; the sockets they
 * end in are drawn last so the wire ends under its dot.
 */
import type { RunState } from "../runstate";
import type { Scene } from "../scene";
import { drawBoxes, drawEdges, drawGroups, drawNode, drawSockets, typeColor, type DrawCtx } from "./draw";
import { widgetRect, type NodeView } from "./layout";
import type { Rect } from "./spatial";
import { lodFor, visibleRect, type Viewport } from "./view";

/** Transient things drawn over the graph (owned by the interaction layer). */
export interface Overlay {
  /** Connection being dragged: from a socket (graph units) to the pointer. */
  wire?: { x0: number; y0: number; x1: number; y1: number; type: string; ok: boolean };
  /** Box selection in graph units. */
  box?: Rect;
  /** Other users' selections: color per node id. */
  remote?: Map<string, string>;
  /** Widgets other users are editing: node id -> param, color, user name. */
  editing?: Map<string, { param: string; color: string; name: string }>;
  /** Other users' pointers in graph units, with their color and name. */
  cursors?: Array<{ x: number; y: number; color: string; name: string }>;
}

export const EMPTY_HINT = "Empty graph: double-click here or press + Node to add a node";

export class Renderer {
  readonly ctx: CanvasRenderingContext2D;
  view: Viewport = { zoom: 1, panX: 0, panY: 0 };
  readonly selected = new Set<string>();
  readonly overlay: Overlay = {};
  /** Nodes drawn in the last frame, sorted bottom to top. */
  visible: NodeView[] = [];
  width = 0;
  height = 0;
  frames = 0;
  lastDrawMs = 0;
  lastDrawAt = 0;
  /** Set once synced: before that an empty scene only means "not loaded yet". */
  emptyHint = false;
  private raf = 0;
  private afterDraw = new Set<() => void>();

  constructor(readonly canvas: HTMLCanvasElement, readonly scene: Scene, readonly run: RunState) {
    const ctx = canvas.getContext("2d", { alpha: false });
    if (!ctx) throw new Error("canvas 2d context unavailable");
    this.ctx = ctx;
  }

  onDraw(fn: () => void): () => void {
    this.afterDraw.add(fn);
    return () => this.afterDraw.delete(fn);
  }

  setView(v: Viewport): void {
    this.view = v;
    this.invalidate();
  }

  invalidate(): void {
    if (this.raf) return;
    this.raf = requestAnimationFrame(() => {
      this.raf = 0;
      this.draw();
    });
  }

  /**
   * Whether the canvas has no layout box now: JupyterLab hides notebook outputs it does not
   * render (windowing, content-visibility, a collapsed cell, a theme switch re-layout), and a
   * hidden canvas measures 0 x 0.
   */
  hidden(): boolean {
    return this.canvas.clientWidth === 0 || this.canvas.clientHeight === 0;
  }

  /**
   * Matches the backing store to the element size and devicePixelRatio. While hidden it keeps
   * the last size: shrinking the backing store to 1 x 1 then left a blank canvas once shown
   * again, because nothing invalidates a canvas whose CSS size did not change.
   */
  resize(): boolean {
    if (this.hidden()) return false;
    const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    const bw = Math.max(1, Math.round(w * dpr)), bh = Math.max(1, Math.round(h * dpr));
    this.width = w;
    this.height = h;
    if (this.canvas.width === bw && this.canvas.height === bh) return false;
    this.canvas.width = bw;
    this.canvas.height = bh;
    return true;
  }

  draw(): void {
    // Drawn again when shown (the app's IntersectionObserver/ResizeObserver invalidate).
    if (this.hidden()) return;
    const t0 = performance.now();
    this.resize();
    const { ctx, view, scene } = this;
    const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#1b1d23";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(dpr * view.zoom, 0, 0, dpr * view.zoom, dpr * view.panX, dpr * view.panY);
    const vis = visibleRect(view, this.width, this.height);
    const lod = lodFor(view.zoom);
    const d: DrawCtx = {
      ctx, zoom: view.zoom, lod, run: this.run, selected: this.selected, nodes: scene.nodes,
      linked: (node, input) => scene.edges.has(`${node}:${input}`),
    };
    drawGroups(d, scene.groups, vis);
    const dev = { k: dpr * view.zoom, tx: dpr * view.panX, ty: dpr * view.panY };
    this.visible = scene.grid.query(vis);
    // Wires go over node bodies (one passing behind a node was invisible), sockets over wires.
    if (lod === 0) {
      drawBoxes(d, this.visible, dev);
      drawEdges(d, scene.edgeGeometry(), vis, dev);
    } else {
      this.visible.sort((a, b) => scene.zOf(a) - scene.zOf(b));
      for (const n of this.visible) drawNode(d, n);
      drawEdges(d, scene.edgeGeometry(), vis, dev);
      if (lod === 2) for (const n of this.visible) drawSockets(d, n);
    }
    this.drawOverlay(d);
    if (this.emptyHint && scene.nodes.size === 0 && scene.groups.size === 0) this.drawEmptyHint(dpr);
    this.frames++;
    this.lastDrawAt = performance.now();
    this.lastDrawMs = this.lastDrawAt - t0;
    for (const fn of this.afterDraw) fn();
  }

  /** An empty graph says how to start instead of showing a blank dark box. */
  private drawEmptyHint(dpr: number): void {
    const { ctx } = this;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#8a909c";
    ctx.font = "14px sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(EMPTY_HINT, this.width / 2, this.height / 2);
    ctx.textAlign = "start";
  }

  private drawOverlay(d: DrawCtx): void {
    const { ctx } = d;
    const o = this.overlay;
    if (o.remote) {
      ctx.lineWidth = 3 / d.zoom;
      for (const [id, color] of o.remote) {
        const n = this.scene.nodes.get(id);
        if (!n) continue;
        ctx.strokeStyle = color;
        ctx.strokeRect(n.x - 4, n.y - 4, n.w + 8, n.h + 8);
      }
    }
    if (o.editing?.size) {
      for (const [id, e] of o.editing) {
        const n = this.scene.nodes.get(id);
        const rect = n ? widgetRect(n, e.param) : null;
        if (!n || !rect) continue;
        ctx.strokeStyle = e.color;
        ctx.lineWidth = 2 / d.zoom;
        ctx.strokeRect(rect.x, rect.y, rect.w, rect.h);
        this.tag(ctx, d.zoom, rect.x + rect.w, rect.y - 15 / d.zoom, e.name, e.color, "right");
      }
    }
    if (o.wire) {
      const w = o.wire;
      ctx.strokeStyle = w.ok ? typeColor(w.type) : "#e53935";
      ctx.lineWidth = 3 / Math.max(d.zoom, 0.5);
      ctx.setLineDash(w.ok ? [] : [6, 4]);
      ctx.beginPath();
      ctx.moveTo(w.x0, w.y0);
      const bend = Math.min(120, Math.abs(w.x1 - w.x0) / 2 + 30);
      ctx.bezierCurveTo(w.x0 + bend, w.y0, w.x1 - bend, w.y1, w.x1, w.y1);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    if (o.box) {
      ctx.fillStyle = "rgba(100,150,255,0.15)";
      ctx.strokeStyle = "rgba(120,170,255,0.9)";
      ctx.lineWidth = 1 / d.zoom;
      ctx.fillRect(o.box.x, o.box.y, o.box.w, o.box.h);
      ctx.strokeRect(o.box.x, o.box.y, o.box.w, o.box.h);
    }
    for (const c of o.cursors ?? []) {
      const k = 1 / d.zoom; // constant size on screen
      ctx.fillStyle = c.color;
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = k;
      ctx.beginPath();
      ctx.moveTo(c.x, c.y);
      ctx.lineTo(c.x, c.y + 16 * k);
      ctx.lineTo(c.x + 4.5 * k, c.y + 12 * k);
      ctx.lineTo(c.x + 11 * k, c.y + 12 * k);
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
      this.tag(ctx, d.zoom, c.x + 10 * k, c.y + 16 * k, c.name, c.color, "left");
    }
  }

  /** A name label in a user's colour, `size`-independent of the zoom. */
  private tag(ctx: CanvasRenderingContext2D, zoom: number, x: number, y: number, text: string, color: string,
              align: "left" | "right"): void {
    const k = 1 / zoom;
    ctx.font = `${11 * k}px sans-serif`;
    const w = ctx.measureText(text).width + 8 * k;
    const left = align === "left" ? x : x - w;
    ctx.fillStyle = color;
    ctx.fillRect(left, y, w, 15 * k);
    ctx.fillStyle = "#fff";
    ctx.textBaseline = "middle";
    ctx.fillText(text, left + 4 * k, y + 7.5 * k);
    ctx.textBaseline = "alphabetic";
  }

  destroy(): void {
    if (this.raf) cancelAnimationFrame(this.raf);
    this.afterDraw.clear();
  }
}
