/**
 * Palette search: rank node types (or commands) for a query, grouped by category.
 *
 * Scoring favours a prefix match of the display name, then a word-start match, then a
 * substring anywhere in name/type/category, then an in-order subsequence ("ksa" finds
 * "KSampler"). Pure functions, unit-tested.
 */
import type { Specs } from "../protocol";

export interface PaletteItem { id: string; label: string; group: string; detail?: string }

export function score(query: string, item: PaletteItem): number {
  const q = query.trim().toLowerCase();
  if (!q) return 1;
  const label = item.label.toLowerCase();
  const hay = `${label} ${item.id.toLowerCase()} ${item.group.toLowerCase()}`;
  if (label.startsWith(q)) return 100 - label.length / 100;
  if (label.split(/[\s_\-/]+/).some((w) => w.startsWith(q))) return 80;
  if (hay.includes(q)) return 60;
  let i = 0;
  for (const ch of label) if (ch === q[i]) i++;
  return i === q.length ? 40 - label.length / 100 : 0;
}

/** Matching items best first; ties keep category then label order. */
export function search(items: PaletteItem[], query: string, limit = 200): PaletteItem[] {
  return items
    .map((item) => ({ item, s: score(query, item) }))
    .filter((x) => x.s > 0)
    .sort((a, b) => b.s - a.s || a.item.group.localeCompare(b.item.group) || a.item.label.localeCompare(b.item.label))
    .slice(0, limit)
    .map((x) => x.item);
}

export function specItems(specs: Specs): PaletteItem[] {
  return Object.values(specs).map((s) => ({
    id: s.type, label: s.display_name || s.type, group: s.category || "other", detail: s.type,
  }));
}

/** Groups items by `group`, keeping the order of first appearance. */
export function grouped(items: PaletteItem[]): Map<string, PaletteItem[]> {
  const out = new Map<string, PaletteItem[]>();
  for (const it of items) {
    const list = out.get(it.group);
    if (list) list.push(it);
    else out.set(it.group, [it]);
  }
  return out;
}
