/**
 * What is under a point: a socket, a node's resize grip, a widget row, a node's title or
 * body, or a group's resize grip or title.
 *
 * Sockets get a hit radius of ~10 screen pixels so they stay grabbable when zoomed out;
 * sockets, widgets and node grips are only hit at a zoom where they are drawn (LOD 2),
 * group grips where group titles are (LOD 1+). A grip is at least `GRIP_PX` on screen and
 * wins over the body under it.
 */
import type { Scene } from "../scene";
import { GRIP, PAD, ROW_H, TITLE_H, type NodeView } from "./layout";
import type { Rect } from "./spatial";
import { lodFor } from "./view";

export type Hit =
  | { kind: "output"; node: NodeView; index: number; x: number; y: number }
  | { kind: "input"; node: NodeView; name: string; x: number; y: number }
  | { kind: "resize"; node: NodeView }
  | { kind: "widget"; node: NodeView; name: string }
  | { kind: "title"; node: NodeView }
  | { kind: "body"; node: NodeView }
  | { kind: "group"; id: string }
  | { kind: "group-resize"; id: string }
  | { kind: "none" };

const PORT_HIT_PX = 10;
const GRIP_PX = 10;

/** Whether (gx, gy) is on the bottom-right resize grip of `r` at this zoom. */
export function onGrip(r: Rect, gx: number, gy: number, zoom: number): boolean {
  const s = Math.max(GRIP, GRIP_PX / zoom);
  return gx >= r.x + r.w - s && gx <= r.x + r.w && gy >= r.y + r.h - s && gy <= r.y + r.h;
}

/** Hit-test at graph point (gx, gy) for the given zoom. */
export function hitTest(scene: Scene, gx: number, gy: number, zoom: number): Hit {
  const detailed = lodFor(zoom) === 2;
  if (detailed) {
    const port = hitPort(scene, gx, gy, PORT_HIT_PX / zoom);
    if (port) return port;
  }
  const n = scene.grid.at(gx, gy, (m) => scene.zOf(m));
  if (n) {
    if (detailed && onGrip(n, gx, gy, zoom)) return { kind: "resize", node: n };
    if (gy - n.y <= TITLE_H) return { kind: "title", node: n };
    if (detailed) {
      for (const p of n.inputs) {
        if (p.widget && Math.abs(n.y + p.y - gy) <= ROW_H / 2 && gx > n.x + PAD && gx < n.x + n.w - PAD) {
          return { kind: "widget", node: n, name: p.name };
        }
      }
    }
    return { kind: "body", node: n };
  }
  const grips = lodFor(zoom) > 0;
  for (const [id, g] of scene.groups) {
    if (grips && onGrip(g, gx, gy, zoom)) return { kind: "group-resize", id };
    if (gx >= g.x && gx <= g.x + g.w && gy >= g.y && gy <= g.y + TITLE_H) return { kind: "group", id };
  }
  return { kind: "none" };
}

/** Nearest socket within radius r of (gx, gy), looking at nodes near the point. */
export function hitPort(scene: Scene, gx: number, gy: number, r: number): Hit | null {
  const near = scene.grid.query({ x: gx - r, y: gy - r, w: 2 * r, h: 2 * r });
  let best: Hit | null = null;
  let bestD = r * r;
  for (const n of near) {
    n.outputs.forEach((o, index) => {
      const d = (n.x + o.x - gx) ** 2 + (n.y + o.y - gy) ** 2;
      if (d <= bestD) { bestD = d; best = { kind: "output", node: n, index, x: n.x + o.x, y: n.y + o.y }; }
    });
    for (const p of n.inputs) {
      const d = (n.x + p.x - gx) ** 2 + (n.y + p.y - gy) ** 2;
      if (d <= bestD) { bestD = d; best = { kind: "input", node: n, name: p.name, x: n.x + p.x, y: n.y + p.y }; }
    }
  }
  return best;
}

/** Nodes whose rectangles lie inside or touch `box` (box selection). */
export function nodesInBox(scene: Scene, box: { x: number; y: number; w: number; h: number }): NodeView[] {
  const norm = {
    x: Math.min(box.x, box.x + box.w), y: Math.min(box.y, box.y + box.h),
    w: Math.abs(box.w), h: Math.abs(box.h),
  };
  return scene.grid.query(norm);
}
