/**
 * Where a new node (or a pasted block of nodes) goes: the free spot nearest to where the user
 * asked, so it never lands on top of another node.
 *
 * Rule, the browser twin of the kernel's `place_new` (`vortex_jupyter/canvas/layout.py`: a node
 * added from Python on a taken spot moves, one on a free spot stays): a spot is taken when the
 * new box, grown by `GAP` on every side, touches a node's box. Box sizes are the renderer's
 * (`layout.ts`), with the preview room an output node grows after a run, as the kernel's
 * `node_size` counts it. The search walks square rings of `STEP` units outward from the asked
 * spot, nearest first (right and below before left and above on ties), each spot one query of
 * the scene's spatial grid; past `MAX_RING` rings it falls back to the kernel's own choice:
 * right of every node (plus `COL_GAP`), level with the topmost.
 */
import { PREVIEW_H, type NodeView } from "./layout";
import { intersects, type SpatialGrid } from "./spatial";

/** Clearance around a placed box (graph units). */
export const GAP = 20;
export const STEP = 24;
export const MAX_RING = 60;
/** The kernel layout's gap between columns (`layout.py` COL_GAP). */
export const COL_GAP = 70;

/** Lattice offsets of ring `r` (spots at Chebyshev distance r), nearest first. */
function ring(r: number): Array<[number, number]> {
  if (r === 0) return [[0, 0]];
  const out: Array<[number, number]> = [];
  for (let i = -r; i <= r; i++) {
    out.push([i, -r], [i, r]);
    if (i !== -r && i !== r) out.push([-r, i], [r, i]);
  }
  // nearest first; on ties, right before left and below before above
  return out.sort((a, b) => a[0] ** 2 + a[1] ** 2 - b[0] ** 2 - b[1] ** 2 || b[0] - a[0] || b[1] - a[1]);
}

const RINGS: Array<Array<[number, number]>> = [];

/** Extra height a node will take below its box (an output node's preview to come), at most `PREVIEW_H`. */
export type Room = (n: NodeView) => number;

/** Whether a `w` x `h` box at (x, y), grown by `GAP`, touches no node in `grid` (nor its `room`). */
export function isFree(grid: SpatialGrid, x: number, y: number, w: number, h: number, room?: Room): boolean {
  const box = { x: x - GAP, y: y - GAP, w: w + 2 * GAP, h: h + 2 * GAP };
  if (!room) return grid.query(box).length === 0;
  // a node above may reach down into the box once its preview shows
  const hits = grid.query({ ...box, y: box.y - PREVIEW_H, h: box.h + PREVIEW_H });
  return hits.every((n) => !intersects({ x: n.x, y: n.y, w: n.w, h: n.h + room(n) }, box));
}

/** Top-left of the free spot for a `w` x `h` box nearest to (x, y). */
export function freeSpot(
  grid: SpatialGrid, nodes: Iterable<NodeView>, w: number, h: number, x: number, y: number, room?: Room,
): [number, number] {
  for (let r = 0; r <= MAX_RING; r++) {
    const offsets = RINGS[r] ?? (RINGS[r] = ring(r));
    for (const [i, j] of offsets) {
      const cx = x + i * STEP, cy = y + j * STEP;
      if (isFree(grid, cx, cy, w, h, room)) return [cx, cy];
    }
  }
  return rightOfAll(nodes, x, y);
}

/** The kernel's spot for a node added on a taken spot: right of all nodes, level with the top. */
export function rightOfAll(nodes: Iterable<NodeView>, x: number, y: number): [number, number] {
  let right = -Infinity, top = Infinity;
  for (const n of nodes) {
    right = Math.max(right, n.x + n.w);
    top = Math.min(top, n.y);
  }
  return right === -Infinity ? [x, y] : [right + COL_GAP, top];
}
