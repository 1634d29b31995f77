/**
 * Canvas2D drawing of groups, edges and nodes at three levels of detail. The renderer paints
 * node bodies first, then edges over them, then (LOD 2) the sockets (`drawSockets`).
 *
 * Cost policy: at LOD 0 (zoomed out, possibly 10,000 nodes on screen) nodes are plain
 * rectangles batched into one path per fill color and edges one path of straight lines, so
 * a frame is a handful of fill/stroke calls. Text, ports, widgets and images are only drawn
 * at LOD 1–2 where few nodes fit on screen.
 *
 * Node modes look as in ComfyUI at every LOD: a muted node is drawn at `MUTED_ALPHA`, a
 * bypassed one under a translucent purple wash (`BYPASS_TINT`).
 *
 * Resize grips (three short diagonals in the bottom-right corner) are drawn where they can be
 * hit (see hittest.ts): on full nodes (LOD 2) and on groups with titles (LOD 1+).
 */
import { MODE_BYPASSED, MODE_MUTED, type GroupValue } from "../protocol";
import { STATE_COLORS, type RunState } from "../runstate";
import { GRIP, PORT_R, ROW_H, TITLE_H, type NodeView } from "./layout";
import type { Rect } from "./spatial";
import type { Lod } from "./view";
import { clipText, nodeErrorText, widgetText, wrapText } from "./text";

export const MUTED_ALPHA = 0.4;
export const BYPASS_TINT = "rgba(156, 39, 176, 0.45)";
const ERROR_LINES = 3;
const ERROR_LINE_H = 14;

const TYPE_COLORS: Record<string, string> = {
  MODEL: "#b39ddb", CLIP: "#ffd54f", VAE: "#ef9a9a", CONDITIONING: "#ffa726",
  LATENT: "#f48fb1", IMAGE: "#64b5f6", MASK: "#81c784", INT: "#4dd0e1",
  FLOAT: "#4db6ac", STRING: "#a5d6a7", BOOLEAN: "#90caf9", COMBO: "#bdbdbd",
};

export function typeColor(t: string): string {
  return TYPE_COLORS[t] ?? "#9e9e9e";
}

const CATEGORY_PALETTE = ["#3b4252", "#44475a", "#3d4a5c", "#4a3f55", "#3f5045", "#554836"];

export function categoryColor(cat: string): string {
  let h = 0;
  for (let i = 0; i < cat.length; i++) h = (h * 31 + cat.charCodeAt(i)) | 0;
  return CATEGORY_PALETTE[Math.abs(h) % CATEGORY_PALETTE.length];
}

export function nodeFill(n: NodeView, run: RunState): string {
  const s = run.state(n.id);
  return s === "idle" ? categoryColor(n.category) : STATE_COLORS[s];
}

export interface DrawCtx {
  ctx: CanvasRenderingContext2D;
  zoom: number;
  lod: Lod;
  run: RunState;
  selected: Set<string>;
  nodes: Map<string, NodeView>;
  /** Whether a link feeds this input (a linked widget shows "linked", not its value). */
  linked(node: string, input: string): boolean;
}

export function drawGroups(d: DrawCtx, groups: Map<string, GroupValue>, vis: Rect): void {
  const { ctx } = d;
  for (const g of groups.values()) {
    if (g.x > vis.x + vis.w || g.y > vis.y + vis.h || g.x + g.w < vis.x || g.y + g.h < vis.y) continue;
    ctx.fillStyle = (g.color ?? "#6a7fa8") + "33";
    ctx.fillRect(g.x, g.y, g.w, g.h);
    ctx.fillStyle = (g.color ?? "#6a7fa8") + "88";
    ctx.fillRect(g.x, g.y, g.w, TITLE_H);
    if (d.lod > 0) {
      ctx.fillStyle = "#fff";
      ctx.font = "bold 14px sans-serif";
      ctx.fillText(g.title, g.x + 8, g.y + 18);
      drawGrip(ctx, g.x + g.w, g.y + g.h, "#ffffff88");
    }
  }
}

/**
 * Edges from the scene's flat endpoint array. LOD 0 draws straight lines in device pixels
 * (identity transform, see `drawBoxes`) and skips edges shorter than a pixel; otherwise
 * beziers in graph units. Culling is by the edge's bounding box (widened by the bend).
 */
export function drawEdges(d: DrawCtx, geom: { xy: Float64Array; n: number }, vis: Rect, dev: DeviceXform): void {
  const { ctx } = d;
  const { xy, n } = geom;
  const simple = d.lod === 0;
  const vx0 = vis.x, vy0 = vis.y, vx1 = vis.x + vis.w, vy1 = vis.y + vis.h;
  ctx.strokeStyle = "#8a93a6";
  ctx.beginPath();
  for (let i = 0; i < n * 4; i += 4) {
    const x0 = xy[i], y0 = xy[i + 1], x1 = xy[i + 2], y1 = xy[i + 3];
    const bend = simple ? 0 : Math.min(120, Math.abs(x1 - x0) / 2 + 30);
    if ((x0 > x1 ? x0 : x1) + bend < vx0 || (x0 < x1 ? x0 : x1) - bend > vx1) continue;
    if ((y0 > y1 ? y0 : y1) < vy0 || (y0 < y1 ? y0 : y1) > vy1) continue;
    if (simple) {
      const ax = x0 * dev.k + dev.tx, ay = y0 * dev.k + dev.ty, bx = x1 * dev.k + dev.tx, by = y1 * dev.k + dev.ty;
      if (Math.abs(bx - ax) + Math.abs(by - ay) < 1) continue;
      ctx.moveTo(ax, ay);
      ctx.lineTo(bx, by);
    } else {
      ctx.moveTo(x0, y0);
      ctx.bezierCurveTo(x0 + bend, y0, x1 - bend, y1, x1, y1);
    }
  }
  if (simple) {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.lineWidth = 1;
    ctx.stroke();
    ctx.restore();
  } else {
    ctx.lineWidth = 2.5;
    ctx.stroke();
  }
}

/** Graph -> device pixel mapping: device = graph * k + t (k = zoom * devicePixelRatio). */
export interface DeviceXform { k: number; tx: number; ty: number }

/**
 * LOD 0: nodes as rectangles snapped to whole device pixels (no anti-aliasing work for the
 * software rasterizer), one path and one fill per color, one stroke for the selection.
 */
export function drawBoxes(d: DrawCtx, visible: NodeView[], dev: DeviceXform): void {
  const { ctx } = d;
  // key: fill color, prefixed with "~" for muted nodes (same color, drawn faded)
  const buckets = new Map<string, NodeView[]>();
  const bypassed: NodeView[] = [];
  for (const n of visible) {
    const c = n.mode === MODE_MUTED ? "~" + nodeFill(n, d.run) : nodeFill(n, d.run);
    let b = buckets.get(c);
    if (!b) buckets.set(c, (b = []));
    b.push(n);
    if (n.mode === MODE_BYPASSED) bypassed.push(n);
  }
  ctx.save();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  for (const [key, list] of buckets) {
    const muted = key[0] === "~";
    ctx.globalAlpha = muted ? MUTED_ALPHA : 1;
    ctx.fillStyle = muted ? key.slice(1) : key;
    fillBoxes(ctx, list, dev);
  }
  ctx.globalAlpha = 1;
  if (bypassed.length) {
    ctx.fillStyle = BYPASS_TINT;
    fillBoxes(ctx, bypassed, dev);
  }
  const { k, tx, ty } = dev;
  if (d.selected.size) {
    ctx.strokeStyle = "#ffd54f";
    ctx.lineWidth = 2;
    ctx.beginPath();
    for (const id of d.selected) {
      const n = d.nodes.get(id);
      if (n) ctx.rect(Math.round(n.x * k + tx), Math.round(n.y * k + ty), Math.round(n.w * k), Math.round(n.h * k));
    }
    ctx.stroke();
  }
  ctx.restore();
}

function fillBoxes(ctx: CanvasRenderingContext2D, list: NodeView[], { k, tx, ty }: DeviceXform): void {
  ctx.beginPath();
  for (const n of list) {
    const x = Math.round(n.x * k + tx), y = Math.round(n.y * k + ty);
    ctx.rect(x, y, Math.max(1, Math.round(n.w * k)), Math.max(1, Math.round(n.h * k)));
  }
  ctx.fill();
}

/** LOD 1–2: one node (frame only at LOD 1), faded when muted, tinted when bypassed. */
export function drawNode(d: DrawCtx, n: NodeView): void {
  const { ctx } = d;
  if (n.mode === MODE_MUTED) ctx.globalAlpha = MUTED_ALPHA;
  (d.lod === 2 ? drawNodeFull : drawNodeFrame)(d, n);
  ctx.globalAlpha = 1;
  if (n.mode === MODE_BYPASSED) {
    ctx.fillStyle = BYPASS_TINT;
    ctx.fillRect(n.x, n.y, n.w, n.h);
  }
}

export function drawNodeFrame(d: DrawCtx, n: NodeView): void {
  const { ctx } = d;
  const state = d.run.state(n.id);
  ctx.fillStyle = "#2b2f3a";
  ctx.fillRect(n.x, n.y, n.w, n.h);
  ctx.fillStyle = state === "idle" ? categoryColor(n.category) : STATE_COLORS[state];
  ctx.fillRect(n.x, n.y, n.w, TITLE_H);
  ctx.fillStyle = "#f0f0f0";
  ctx.font = "bold 13px sans-serif";
  ctx.fillText(clip(ctx, n.title, n.w - 16), n.x + 8, n.y + 17);
  const sel = d.selected.has(n.id);
  if (sel || state === "running" || state === "failed") {
    ctx.strokeStyle = sel ? "#ffd54f" : STATE_COLORS[state];
    ctx.lineWidth = 2;
    ctx.strokeRect(n.x - 1, n.y - 1, n.w + 2, n.h + 2);
  }
  const p = d.run.progress.get(n.id);
  if (p !== undefined && (state === "running" || state === "done")) {
    ctx.fillStyle = "#ffffff55";
    ctx.fillRect(n.x, n.y + TITLE_H - 4, n.w * p, 4);
  }
}

/** LOD 2 without the sockets: the renderer draws those after the wires (`drawSockets`). */
export function drawNodeFull(d: DrawCtx, n: NodeView): void {
  drawNodeFrame(d, n);
  const { ctx } = d;
  ctx.font = "12px sans-serif";
  for (const p of n.inputs) {
    if (!p.widget) {
      ctx.fillStyle = "#cfd3dc";
      ctx.fillText(p.name, n.x + 10, n.y + p.y + 4);
    }
  }
  for (const o of n.outputs) {
    ctx.fillStyle = "#cfd3dc";
    const w = ctx.measureText(o.name).width;
    ctx.fillText(o.name, n.x + n.w - 10 - w, n.y + o.y + 4);
  }
  for (const p of n.inputs) if (p.widget) drawWidgetRow(ctx, n, p.name, p.y, d.linked(n.id, p.name), p.spec?.default);
  drawNodeExtras(d, n);
  drawGrip(ctx, n.x + n.w, n.y + n.h, "#8a909c");
}

/** A node's socket dots (LOD 2), over the wires that end in them; faded with a muted node. */
export function drawSockets(d: DrawCtx, n: NodeView): void {
  const { ctx } = d;
  if (n.mode === MODE_MUTED) ctx.globalAlpha = MUTED_ALPHA;
  for (const p of n.inputs) dot(ctx, n.x + p.x, n.y + p.y, typeColor(p.type));
  for (const o of n.outputs) dot(ctx, n.x + o.x, n.y + o.y, typeColor(o.type));
  ctx.globalAlpha = 1;
}

/** The resize grip whose bottom-right corner is (x, y). */
function drawGrip(ctx: CanvasRenderingContext2D, x: number, y: number, color: string): void {
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  for (let k = GRIP / 3; k <= GRIP; k += GRIP / 3) {
    ctx.moveTo(x - k, y - 2);
    ctx.lineTo(x - 2, y - k);
  }
  ctx.stroke();
}

function drawWidgetRow(
  ctx: CanvasRenderingContext2D, n: NodeView, name: string, cy: number, linked: boolean, fallback: unknown,
): void {
  const x = n.x + 12, y = n.y + cy - ROW_H / 2 + 2, w = n.w - 24;
  ctx.fillStyle = "#1f222a";
  ctx.fillRect(x, y, w, ROW_H - 4);
  ctx.fillStyle = "#9aa1b0";
  ctx.fillText(name, x + 6, y + 12);
  const { text, dim } = widgetText(n.params[name], linked, fallback);
  ctx.fillStyle = dim ? "#8a909c" : "#e8e8e8";
  const shown = clip(ctx, text, w / 2);
  ctx.fillText(shown, x + w - 6 - ctx.measureText(shown).width, y + 12);
}

function drawNodeExtras(d: DrawCtx, n: NodeView): void {
  const { ctx } = d;
  const img = d.run.images.get(n.id);
  // the area under the rows: PREVIEW_H high, or taller in a node resized taller
  if (img && n.h - n.previewTop > 16) {
    const top = n.y + n.previewTop + 4, boxW = n.w - 8, boxH = n.h - n.previewTop - 8;
    const s = Math.min(boxW / img.width, boxH / img.height);
    const w = img.width * s, h = img.height * s;
    ctx.drawImage(img, n.x + 4 + (boxW - w) / 2, top + (boxH - h) / 2, w, h);
  }
  const err = d.run.errors.get(n.id);
  const note = d.run.notes.get(n.id);
  if (err) drawError(ctx, n, nodeErrorText(err));
  else if (note) drawError(ctx, n, note, NOTE_COLOR);
}

/** Banner color of a node's note (its last progress text, e.g. a missing embedding). */
export const NOTE_COLOR = "#8a6a1c";

/** The banner under a node (a failure, or a note): wrapped (up to 3 lines) so it stays readable. */
function drawError(ctx: CanvasRenderingContext2D, n: NodeView, text: string, color = "#b8383b"): void {
  ctx.font = "11px sans-serif";
  const lines = wrapText(text, n.w - 8, (t) => ctx.measureText(t).width, ERROR_LINES);
  ctx.fillStyle = color;
  ctx.fillRect(n.x, n.y + n.h, n.w, lines.length * ERROR_LINE_H + 5);
  ctx.fillStyle = "#fff";
  lines.forEach((line, i) => ctx.fillText(line, n.x + 4, n.y + n.h + 13 + i * ERROR_LINE_H));
}

function dot(ctx: CanvasRenderingContext2D, x: number, y: number, color: string): void {
  ctx.fillStyle = color;
  ctx.beginPath();
  ctx.arc(x, y, PORT_R, 0, Math.PI * 2);
  ctx.fill();
}

/** Truncates text with an ellipsis to fit `max` px. */
export function clip(ctx: CanvasRenderingContext2D, text: string, max: number): string {
  return clipText(text, max, (t) => ctx.measureText(t).width);
}
