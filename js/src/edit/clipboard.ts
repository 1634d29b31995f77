/**
 * Copy/paste as JSON: selected nodes plus the edges among them, placed again at an offset
 * with fresh ids. The same text goes to the system clipboard, so a paste works across views
 * and notebooks; a module-level copy covers pages where the clipboard API is denied.
 */
import type { NodeData } from "../docmodel";
import { newNodeId, type EdgeValue } from "../protocol";

export const CLIPBOARD_KIND = "vortex-jupyter/nodes";

export interface ClipboardData {
  kind: typeof CLIPBOARD_KIND;
  nodes: NodeData[];
  edges: EdgeValue[];
}

let lastCopied: string | null = null;

export function serialize(nodes: NodeData[], edges: EdgeValue[]): string {
  const ids = new Set(nodes.map((n) => n.id));
  const inner = edges.filter((e) => ids.has(e.src) && ids.has(e.dst));
  const text = JSON.stringify({ kind: CLIPBOARD_KIND, nodes, edges: inner } satisfies ClipboardData);
  lastCopied = text;
  return text;
}

export function lastCopiedText(): string | null {
  return lastCopied;
}

/** Parses clipboard text; null when it is not ours (so a paste of other text is ignored). */
export function parse(text: string | null | undefined): ClipboardData | null {
  if (!text) return null;
  try {
    const d = JSON.parse(text) as ClipboardData;
    if (d?.kind !== CLIPBOARD_KIND || !Array.isArray(d.nodes) || !Array.isArray(d.edges)) return null;
    return d;
  } catch {
    return null;
  }
}

/** New nodes (fresh ids, top-left at (x, y)) and their remapped edges. */
export function instantiate(d: ClipboardData, x: number, y: number, rand = Math.random): ClipboardData {
  const minX = Math.min(...d.nodes.map((n) => n.x)), minY = Math.min(...d.nodes.map((n) => n.y));
  const ids = new Map<string, string>();
  const nodes = d.nodes.map((n) => {
    const id = newNodeId(rand);
    ids.set(n.id, id);
    return { ...n, id, x: n.x - minX + x, y: n.y - minY + y, params: { ...n.params } };
  });
  const edges = d.edges.flatMap((e) => {
    const src = ids.get(e.src), dst = ids.get(e.dst);
    return src && dst ? [{ ...e, src, dst }] : [];
  });
  return { kind: CLIPBOARD_KIND, nodes, edges };
}
