/**
 * A uniform grid over graph space, for viewport culling and hit-testing.
 *
 * Each node is filed in every cell its rectangle touches. Cells are large (1024 units) so a
 * typical node touches 1–2 cells; queries dedupe with a per-query stamp on the node.
 */
import type { NodeView } from "./layout";

export interface Rect { x: number; y: number; w: number; h: number }

export class SpatialGrid {
  private cells = new Map<number, Set<NodeView>>();
  private where = new Map<string, number[]>();
  private stamp = 1;

  constructor(readonly cell = 1024) {}

  private key(cx: number, cy: number): number {
    // Cell coordinates fit in 21 bits each for graphs within ±500M units.
    return (cx + 0x100000) * 0x200000 + (cy + 0x100000);
  }

  private cellsOf(r: Rect): number[] {
    const c = this.cell;
    const x0 = Math.floor(r.x / c), x1 = Math.floor((r.x + r.w) / c);
    const y0 = Math.floor(r.y / c), y1 = Math.floor((r.y + r.h) / c);
    const out: number[] = [];
    for (let cx = x0; cx <= x1; cx++) for (let cy = y0; cy <= y1; cy++) out.push(this.key(cx, cy));
    return out;
  }

  insert(n: NodeView): void {
    this.remove(n.id);
    const keys = this.cellsOf(n);
    for (const k of keys) {
      let s = this.cells.get(k);
      if (!s) this.cells.set(k, (s = new Set()));
      s.add(n);
    }
    this.where.set(n.id, keys);
  }

  remove(id: string): void {
    const keys = this.where.get(id);
    if (!keys) return;
    for (const k of keys) {
      const s = this.cells.get(k);
      if (!s) continue;
      for (const n of s) if (n.id === id) { s.delete(n); break; }
      if (s.size === 0) this.cells.delete(k);
    }
    this.where.delete(id);
  }

  /** Nodes whose rectangles intersect `r`, each once. */
  query(r: Rect, out: NodeView[] = []): NodeView[] {
    const stamp = ++this.stamp;
    const c = this.cell;
    const x0 = Math.floor(r.x / c), x1 = Math.floor((r.x + r.w) / c);
    const y0 = Math.floor(r.y / c), y1 = Math.floor((r.y + r.h) / c);
    if ((x1 - x0 + 1) * (y1 - y0 + 1) > this.cells.size) return this.scanAll(r, stamp, out);
    for (let cx = x0; cx <= x1; cx++) {
      for (let cy = y0; cy <= y1; cy++) {
        const s = this.cells.get(this.key(cx, cy));
        if (s) this.collect(s, r, stamp, out);
      }
    }
    return out;
  }

  /** When the query covers more cells than exist, walking the occupied cells is cheaper. */
  private scanAll(r: Rect, stamp: number, out: NodeView[]): NodeView[] {
    for (const s of this.cells.values()) this.collect(s, r, stamp, out);
    return out;
  }

  private collect(s: Set<NodeView>, r: Rect, stamp: number, out: NodeView[]): void {
    for (const n of s) {
      if (n.seen === stamp) continue;
      n.seen = stamp;
      if (intersects(n, r)) out.push(n);
    }
  }

  /** Topmost node under a point; `order` ranks nodes (later = on top). */
  at(x: number, y: number, order: (n: NodeView) => number): NodeView | null {
    const s = this.cells.get(this.key(Math.floor(x / this.cell), Math.floor(y / this.cell)));
    let best: NodeView | null = null;
    if (!s) return null;
    for (const n of s) {
      if (x >= n.x && x <= n.x + n.w && y >= n.y && y <= n.y + n.h && (!best || order(n) > order(best))) best = n;
    }
    return best;
  }

  clear(): void {
    this.cells.clear();
    this.where.clear();
  }
}

export function intersects(a: Rect, b: Rect): boolean {
  return a.x <= b.x + b.w && a.x + a.w >= b.x && a.y <= b.y + b.h && a.y + a.h >= b.y;
}

export function contains(outer: Rect, inner: Rect): boolean {
  return inner.x >= outer.x && inner.y >= outer.y &&
    inner.x + inner.w <= outer.x + outer.w && inner.y + inner.h <= outer.y + outer.h;
}
