import { describe, expect, it } from "vitest";
import {
  MAX_ZOOM, MIN_ZOOM, boundsOf, fitRect, graphToScreen, lodFor, screenToGraph, visibleRect, zoomAt,
} from "../src/render/view";

describe("viewport math", () => {
  const v = { zoom: 2, panX: 100, panY: -50 };

  it("screenToGraph inverts graphToScreen", () => {
    const [sx, sy] = graphToScreen(v, 10, 20);
    expect([sx, sy]).toEqual([120, -10]);
    expect(screenToGraph(v, sx, sy)).toEqual([10, 20]);
  });

  it("zooming keeps the graph point under the cursor fixed", () => {
    const before = screenToGraph(v, 300, 200);
    const z = zoomAt(v, 1.7, 300, 200);
    const after = screenToGraph(z, 300, 200);
    expect(z.zoom).toBeCloseTo(3.4);
    expect(after[0]).toBeCloseTo(before[0]);
    expect(after[1]).toBeCloseTo(before[1]);
  });

  it("clamps zoom to its limits", () => {
    expect(zoomAt(v, 1e6, 0, 0).zoom).toBe(MAX_ZOOM);
    expect(zoomAt(v, 1e-9, 0, 0).zoom).toBe(MIN_ZOOM);
  });

  it("fit-to-view shows the whole rectangle inside the margins, centred", () => {
    const r = { x: -500, y: 200, w: 4000, h: 1000 };
    const f = fitRect(r, 800, 600, 20);
    const [x0, y0] = graphToScreen(f, r.x, r.y);
    const [x1, y1] = graphToScreen(f, r.x + r.w, r.y + r.h);
    expect(x0).toBeGreaterThanOrEqual(19.99);
    expect(x1).toBeLessThanOrEqual(780.01);
    expect(y0).toBeGreaterThanOrEqual(20);
    expect(y1).toBeLessThanOrEqual(580);
    expect((y0 + y1) / 2).toBeCloseTo(300);
  });

  it("visible rectangle matches the canvas size at the zoom", () => {
    expect(visibleRect({ zoom: 0.5, panX: 10, panY: 20 }, 800, 600)).toEqual({ x: -20, y: -40, w: 1600, h: 1200 });
  });

  it("picks less detail as it zooms out", () => {
    expect(lodFor(1)).toBe(2);
    expect(lodFor(0.4)).toBe(1);
    expect(lodFor(0.05)).toBe(0);
  });

  it("bounds of rectangles", () => {
    expect(boundsOf([{ x: 0, y: 0, w: 10, h: 10 }, { x: -5, y: 20, w: 5, h: 5 }])).toEqual({ x: -5, y: 0, w: 15, h: 25 });
    expect(boundsOf([])).toBeNull();
  });
});
