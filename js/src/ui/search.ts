/**
 * Palette search: rank node types and commands for a query, grouped by category.
 *
 * Scoring favours a prefix match of the display name, then a word-start match, then a
 * substring anywhere in name/type/category/detail, then an in-order subsequence ("ksa" finds
 * "KSampler"). An item's `boost` (commands get `COMMAND_BOOST`) breaks ties between equally
 * good matches without lifting a weaker match over a better one: in the command palette a
 * command wins over a node type only when both match the query as well. Pure functions,
 * unit-tested.
 */
import type { Specs } from "../protocol";

export interface PaletteItem {
  id: string;
  label: string;
  group: string;
  detail?: string;
  /** What picking it does in a palette that lists both: run a command or add a node. */
  kind?: "command" | "node";
  /** Added to a matching item's score (less than the gap between two match kinds). */
  boost?: number;
}

/** Commands first among equally good matches (and with an empty query). */
export const COMMAND_BOOST = 0.5;
/** The group of node types listed in the command palette. */
export const NODE_GROUP = "add node";

export function score(query: string, item: PaletteItem): number {
  const q = query.trim().toLowerCase();
  if (!q) return 1;
  const label = item.label.toLowerCase();
  const hay = `${label} ${item.id.toLowerCase()} ${item.group.toLowerCase()} ${(item.detail ?? "").toLowerCase()}`;
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
    .map((x) => ({ item: x.item, s: x.s + (x.item.boost ?? 0) }))
    .sort((a, b) => b.s - a.s || a.item.group.localeCompare(b.item.group) || a.item.label.localeCompare(b.item.label))
    .slice(0, limit)
    .map((x) => x.item);
}

/** Node types for the add-node palette, grouped by category. */
export function specItems(specs: Specs): PaletteItem[] {
  return Object.values(specs).map((s) => ({
    id: s.type, label: s.display_name || s.type, group: s.category || "other", detail: s.type, kind: "node" as const,
  }));
}

/** Node types for the command palette: one "add node" group, each showing its category. */
export function nodeItems(specs: Specs): PaletteItem[] {
  return specItems(specs).map((it) => ({ ...it, group: NODE_GROUP, detail: it.group }));
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
