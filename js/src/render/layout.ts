/**
 * Node geometry in graph units: size, socket rows, widget rows and port positions.
 *
 * A node is a title bar, then rows: socket rows (wired inputs on the left, outputs on the
 * right, side by side), then one row per widget input (which also has a socket on the left,
 * so a widget can be driven by a link), then an optional preview image area.
 *
 * A node's doc `w`/`h` (set by resizing it) can only make it larger than its natural size
 * (`minW` x `minH`, what the title, rows and preview need): widget rows stretch with the
 * width, the preview area takes whatever height is left under the rows.
 */
import type { NodeData } from "../docmodel";
import type { NodeSpecJson, PortSpecJson } from "../protocol";
import { isWidget } from "../ports";

export const TITLE_H = 26;
export const ROW_H = 20;
export const PAD = 6;
export const MIN_W = 180;
export const PREVIEW_H = 140;
export const PORT_R = 5;
/** Side of the bottom-right resize grip of nodes and groups (graph units). */
export const GRIP = 12;
/** Widest a node grows on its own to fit its type's title (graph units). */
export const MAX_AUTO_W = 300;

/**
 * Width that shows a title in full: bold 13px sans averages under 7.5 px a character, plus
 * the title's 8 px inset each side. Twin of `vortex_jupyter/canvas/layout.py`.
 */
export function titleWidth(title: string): number {
  return Math.min(MAX_AUTO_W, Math.ceil(title.length * 7.5) + 16);
}

export interface InPort { name: string; type: string; widget: boolean; spec?: PortSpecJson; x: number; y: number }
export interface OutPort { name: string; type: string; x: number; y: number }

/** What the renderer and hit-testing know about a node (rebuilt when the node changes). */
export interface NodeView {
  id: string;
  type: string;
  title: string;
  x: number;
  y: number;
  w: number;
  h: number;
  /** ComfyUI mode (0 always, 2 muted, 4 bypassed): drawn dimmed or tinted. */
  mode: number;
  params: Record<string, unknown>;
  spec?: NodeSpecJson;
  /** Port positions relative to the node's top-left corner. */
  inputs: InPort[];
  outputs: OutPort[];
  /** Top of the first widget row, relative to the node. */
  widgetTop: number;
  /** Top of the preview image area (the end of the rows), relative to the node. */
  previewTop: number;
  /** Natural size: resizing stops there. */
  minW: number;
  minH: number;
  category: string;
  /** Frame stamp used to dedupe nodes spanning several grid cells. */
  seen: number;
}

/** Inputs of a node: from its spec, plus any params the spec does not know (unknown types). */
function inputsOf(d: NodeData, spec?: NodeSpecJson): { links: PortSpecJson[]; widgets: PortSpecJson[] } {
  if (!spec) {
    // Unknown type: show its params as widgets (this path is not shape-cached).
    const widgets = Object.keys(d.params).map((name) => ({ name, type: "*", widget: true }));
    return { links: [], widgets };
  }
  return { links: spec.inputs.filter((p) => !isWidget(p)), widgets: spec.inputs.filter(isWidget) };
}

/** The type-dependent part of a node's geometry, shared by all nodes of one shape. */
interface Shape {
  w: number; h: number; minW: number; minH: number;
  inputs: InPort[]; outputs: OutPort[]; widgetTop: number; previewTop: number;
}

// Laying out 10,000 nodes of a few types must not build 10,000 port arrays: shapes are
// cached per (spec, params-derived widgets, size, preview). Specs are replaced wholesale
// on change, so the WeakMap drops stale shapes.
const shapes = new WeakMap<NodeSpecJson, Map<string, Shape>>();
const SHAPE_CACHE_MAX = 512; // sizes kept per node type

function shapeOf(d: NodeData, spec: NodeSpecJson | undefined, hasPreview: boolean): Shape {
  if (!spec) return buildShape(d, spec, hasPreview);
  let byKey = shapes.get(spec);
  if (!byKey) shapes.set(spec, (byKey = new Map()));
  const key = `${d.w ?? 0}|${d.h ?? 0}|${hasPreview ? 1 : 0}`;
  let s = byKey.get(key);
  if (!s) {
    // Resizing makes a new size per pointer move: keep the cache bounded (rebuilds are cheap).
    if (byKey.size >= SHAPE_CACHE_MAX) byKey.clear();
    byKey.set(key, (s = buildShape(d, spec, hasPreview)));
  }
  return s;
}

function buildShape(d: NodeData, spec: NodeSpecJson | undefined, hasPreview: boolean): Shape {
  const { links, widgets } = inputsOf(d, spec);
  const outs = spec?.outputs ?? [];
  const socketRows = Math.max(links.length, outs.length);
  const widgetTop = TITLE_H + PAD + socketRows * ROW_H;
  const previewTop = widgetTop + widgets.length * ROW_H + PAD;
  const minH = Math.max(previewTop + (hasPreview ? PREVIEW_H : 0), TITLE_H + ROW_H);
  const minW = Math.max(MIN_W, titleWidth(spec?.display_name || d.type));
  const h = Math.max(minH, d.h ?? 0), w = Math.max(minW, d.w ?? 0);
  const rowY = (i: number): number => TITLE_H + PAD + i * ROW_H + ROW_H / 2;
  const inputs: InPort[] = links.map((p, i) => ({ name: p.name, type: p.type, widget: false, spec: p, x: 0, y: rowY(i) }));
  widgets.forEach((p, i) => inputs.push({
    name: p.name, type: p.type, widget: true, spec: p, x: 0, y: widgetTop + i * ROW_H + ROW_H / 2,
  }));
  const outputs: OutPort[] = outs.map((o, i) => ({ name: o.name, type: o.type, x: w, y: rowY(i) }));
  return { w, h, minW, minH, inputs, outputs, widgetTop, previewTop };
}

/**
 * Lays a node out. `params` may be a thunk: params are only needed to draw widget values
 * (zoomed in) and reading 10,000 of them from the Y doc would slow the first frame.
 */
export function layoutNode(
  d: Omit<NodeData, "params">, spec: NodeSpecJson | undefined, hasPreview: boolean,
  params: Record<string, unknown> | (() => Record<string, unknown>),
): NodeView {
  let cached = typeof params === "function" ? undefined : params;
  const s = shapeOf(spec ? (d as NodeData) : { ...d, params: cached ?? (params as () => Record<string, unknown>)() }, spec, hasPreview);
  const read = params as () => Record<string, unknown>;
  return {
    id: d.id, type: d.type, title: d.title ?? spec?.display_name ?? d.type,
    x: d.x, y: d.y, w: s.w, h: s.h, mode: d.mode ?? 0, spec, inputs: s.inputs, outputs: s.outputs,
    get params() { return cached ?? (cached = read()); },
    widgetTop: s.widgetTop, previewTop: s.previewTop, minW: s.minW, minH: s.minH,
    category: spec?.category ?? "", seen: 0,
  };
}

/** Absolute graph position of an input socket; widget inputs too. */
export function inputPos(n: NodeView, name: string): [number, number] | null {
  const p = n.inputs.find((q) => q.name === name);
  return p ? [n.x + p.x, n.y + p.y] : null;
}

export function outputPos(n: NodeView, index: number): [number, number] | null {
  const p = n.outputs[index];
  return p ? [n.x + p.x, n.y + p.y] : null;
}

/** Rectangle of a widget row (graph units), for hit-testing and the DOM editor. */
export function widgetRect(n: NodeView, name: string): { x: number; y: number; w: number; h: number } | null {
  const p = n.inputs.find((q) => q.widget && q.name === name);
  if (!p) return null;
  return { x: n.x + PAD * 2, y: n.y + p.y - ROW_H / 2, w: n.w - PAD * 4, h: ROW_H };
}
