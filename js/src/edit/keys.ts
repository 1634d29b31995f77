/**
 * Keyboard input on the focused canvas: shortcuts, zoom/pan keys, and moving the selection
 * between nodes (Tab / Shift+Tab in reading order, arrows to the nearest node that way).
 * Without a selection the arrows pan; Shift+arrows always pan. Ctrl+M / Ctrl+B mute / bypass
 * the selection as in ComfyUI.
 */
import { MODE_BYPASSED, MODE_MUTED } from "../protocol";
import type { NodeView } from "../render/layout";
import { graphToScreen, zoomAt } from "../render/view";
import type { Host } from "./host";

export type Dir = "left" | "right" | "up" | "down";
const ARROWS: Record<string, Dir> = { ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down" };

/** The nearest node from `from` in direction `dir` (centre to centre, off-axis costs double). */
export function neighbor(nodes: Iterable<NodeView>, from: NodeView, dir: Dir): NodeView | null {
  const cx = from.x + from.w / 2, cy = from.y + from.h / 2;
  let best: NodeView | null = null, bestCost = Infinity;
  for (const n of nodes) {
    if (n.id === from.id) continue;
    const dx = n.x + n.w / 2 - cx, dy = n.y + n.h / 2 - cy;
    const along = dir === "left" ? -dx : dir === "right" ? dx : dir === "up" ? -dy : dy;
    const across = dir === "left" || dir === "right" ? Math.abs(dy) : Math.abs(dx);
    if (along <= 0) continue;
    const cost = along + 2 * across;
    if (cost < bestCost) { bestCost = cost; best = n; }
  }
  return best;
}

/** Nodes in reading order (rows of ~100 units, then left to right). */
export function readingOrder(nodes: Iterable<NodeView>): NodeView[] {
  return [...nodes].sort((a, b) => Math.round(a.y / 100) - Math.round(b.y / 100) || a.x - b.x || a.id.localeCompare(b.id));
}

export function handleKey(h: Host, e: KeyboardEvent): boolean {
  const mod = e.ctrlKey || e.metaKey;
  const k = e.key.toLowerCase();
  if (mod && (k === "k" || (e.shiftKey && k === "p"))) { h.openCommandPalette(); return true; }
  if (mod && k === "z") { if (e.shiftKey) h.editor.undo.redo(); else h.editor.undo.undo(); return true; }
  if (mod && k === "y") { h.editor.undo.redo(); return true; }
  if (mod && k === "c") { h.copy(); return true; }
  if (mod && k === "x") { h.copy(); h.editor.deleteNodes(h.r.selected); h.setSelection([]); return true; }
  if (mod && k === "v") { h.paste(); return true; }
  if (mod && k === "a") { h.setSelection(h.scene.nodes.keys()); return true; }
  if (mod && k === "g") { h.group(); return true; }
  if (mod && k === "m") { toggleMode(h, MODE_MUTED); return true; }
  if (mod && k === "b") { toggleMode(h, MODE_BYPASSED); return true; }
  if (mod) return false;
  if (e.key === "Delete" || e.key === "Backspace") { h.editor.deleteNodes([...h.r.selected]); h.setSelection([]); return true; }
  if (e.key === "Escape") { h.setSelection([]); return true; }
  if (e.key === "+" || e.key === "=" || e.key === "-") { zoomKey(h, e.key === "-" ? 1 / 1.2 : 1.2); return true; }
  if (k === "f" || e.key === "0") { h.fit(); return true; }
  if (e.key === "Tab") return cycle(h, e.shiftKey ? -1 : 1);
  const dir = ARROWS[e.key];
  if (dir) { arrow(h, dir, e.shiftKey); return true; }
  return false;
}

/** Mutes / bypasses the selection, or restores it when all of it is already so. */
export function toggleMode(h: Host, mode: number): void {
  if (h.editor.toggleMode(h.r.selected, mode) === null) {
    h.toast(`Select nodes to ${mode === MODE_MUTED ? "mute" : "bypass"} first`, "info");
  }
}

function zoomKey(h: Host, factor: number): void {
  h.r.setView(zoomAt(h.r.view, factor, h.r.width / 2, h.r.height / 2));
}

/**
 * Tab / Shift+Tab: next / previous node in reading order. Past the last (or before the
 * first) node the selection clears and the key is not consumed, so focus can leave the
 * canvas (no keyboard trap).
 */
function cycle(h: Host, step: 1 | -1): boolean {
  const order = readingOrder(h.r.visible.length ? h.r.visible : h.scene.nodes.values());
  const cur = [...h.r.selected][0];
  const i = order.findIndex((n) => n.id === cur);
  const j = i < 0 ? (step > 0 ? 0 : order.length - 1) : i + step;
  if (j < 0 || j >= order.length) {
    h.setSelection([]);
    return false;
  }
  select(h, order[j]);
  return true;
}

function arrow(h: Host, dir: Dir, pan: boolean): void {
  const cur = h.scene.nodes.get([...h.r.selected][0] ?? "");
  if (!pan && cur) {
    const next = neighbor(h.scene.nodes.values(), cur, dir);
    if (next) select(h, next);
    return;
  }
  const v = h.r.view, step = 60;
  const dx = dir === "left" ? step : dir === "right" ? -step : 0;
  const dy = dir === "up" ? step : dir === "down" ? -step : 0;
  h.r.setView({ zoom: v.zoom, panX: v.panX + dx, panY: v.panY + dy });
}

/** Selects a node and scrolls it into view when it is off screen. */
function select(h: Host, n: NodeView): void {
  h.setSelection([n.id]);
  const v = h.r.view;
  const [x, y] = graphToScreen(v, n.x, n.y);
  if (x < 0 || y < 0 || x + n.w * v.zoom > h.r.width || y + n.h * v.zoom > h.r.height) {
    h.r.setView({ zoom: v.zoom, panX: h.r.width / 2 - (n.x + n.w / 2) * v.zoom, panY: h.r.height / 2 - (n.y + n.h / 2) * v.zoom });
  }
}
