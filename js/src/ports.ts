/**
 * Port type compatibility: the same rule as `vortex_jupyter/graph/ports.py`.
 *
 * Types are ComfyUI strings; "*" matches anything; a comma-separated type ("INT,FLOAT")
 * accepts any of its members. `whyIncompatible` gives the reason shown to the user.
 */
import type { NodeSpecJson, PortSpecJson } from "./protocol";

export const ANY = "*";

/** Types edited as widgets (values) rather than wired, unless `forceInput`. */
export const WIDGET_TYPES = new Set(["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"]);

function members(t: string): string[] {
  return t.includes(",") ? t.split(",").map((p) => p.trim()) : [t];
}

/** Whether an output of type `src` may be linked into an input of type `dst`. */
export function compatible(src: string, dst: string): boolean {
  if (src === dst || src === ANY || dst === ANY) return true;
  const dstMembers = new Set(members(dst));
  return members(src).some((m) => dstMembers.has(m));
}

/** Null when the link is allowed, else a sentence naming both ports and what to do. */
export function whyIncompatible(
  srcNode: string, srcName: string, srcType: string,
  dstNode: string, dstName: string, dstType: string,
): string | null {
  if (srcNode === dstNode) return `cannot connect ${srcNode} to itself`;
  if (compatible(srcType, dstType)) return null;
  return `${srcNode}.${srcName} gives ${srcType} but ${dstNode}.${dstName} takes ${dstType}; ` +
    `connect an output of type ${dstType}`;
}

/** Whether a spec input is shown as a widget (value) rather than only a socket. */
export function isWidget(p: PortSpecJson): boolean {
  if (typeof p.widget === "boolean") return p.widget;
  return WIDGET_TYPES.has(p.type) && !p.forceInput;
}

export function inputType(spec: NodeSpecJson | undefined, name: string): string | undefined {
  return spec?.inputs.find((p) => p.name === name)?.type;
}
