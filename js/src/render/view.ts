/**
 * Viewport math: screen = graph * zoom + pan (CSS pixels relative to the canvas element).
 *
 * Zooming keeps the graph point under the cursor fixed; fit-to-view frames a rectangle
 * with a margin. Level of detail is chosen from the zoom alone so it is stable while panning.
 */
import type { Rect } from "./spatial";

export const MIN_ZOOM = 0.02;
export const MAX_ZOOM = 4;

export interface Viewport { zoom: number; panX: number; panY: number }

/** 0: boxes only; 1: boxes + titles; 2: full nodes with ports, widgets and previews. */
export type Lod = 0 | 1 | 2;

export function lodFor(zoom: number): Lod {
  if (zoom < 0.3) return 0;
  if (zoom < 0.55) return 1;
  return 2;
}

export function screenToGraph(v: Viewport, sx: number, sy: number): [number, number] {
  return [(sx - v.panX) / v.zoom, (sy - v.panY) / v.zoom];
}

export function graphToScreen(v: Viewport, gx: number, gy: number): [number, number] {
  return [gx * v.zoom + v.panX, gy * v.zoom + v.panY];
}

/** The graph rectangle visible in a canvas of `width` x `height` CSS px. */
export function visibleRect(v: Viewport, width: number, height: number): Rect {
  const [x, y] = screenToGraph(v, 0, 0);
  return { x, y, w: width / v.zoom, h: height / v.zoom };
}

export function clampZoom(z: number): number {
  return Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, z));
}

/** Zoom by `factor` keeping the graph point under screen point (sx, sy) in place. */
export function zoomAt(v: Viewport, factor: number, sx: number, sy: number): Viewport {
  const zoom = clampZoom(v.zoom * factor);
  const [gx, gy] = screenToGraph(v, sx, sy);
  return { zoom, panX: sx - gx * zoom, panY: sy - gy * zoom };
}

/** Viewport that shows `r` centred in width x height with `margin` CSS px around it. */
export function fitRect(r: Rect, width: number, height: number, margin = 24): Viewport {
  if (r.w <= 0 || r.h <= 0) return { zoom: 1, panX: margin, panY: margin };
  const zoom = clampZoom(Math.min((width - 2 * margin) / r.w, (height - 2 * margin) / r.h, 1.5));
  return {
    zoom,
    panX: (width - r.w * zoom) / 2 - r.x * zoom,
    panY: (height - r.h * zoom) / 2 - r.y * zoom,
  };
}

export function boundsOf(rects: Iterable<Rect>): Rect | null {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const r of rects) {
    x0 = Math.min(x0, r.x); y0 = Math.min(y0, r.y);
    x1 = Math.max(x1, r.x + r.w); y1 = Math.max(y1, r.y + r.h);
  }
  return x0 === Infinity ? null : { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
}
