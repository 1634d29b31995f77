/**
 * The view's read model of the graph: laid-out nodes, edges and groups mirrored from the
 * Y doc, with a spatial grid for culling and hit-testing.
 *
 * State: rebuilt incrementally from Y events (only the nodes an event touches are laid out
 * again); `version` bumps on every change so the renderer and the accessible list know when
 * to redraw. Nothing here writes to the doc.
 */
import * as Y from "yjs";
import { GraphDoc, readNodeFields, readParams } from "./docmodel";
import type { EdgeValue, GroupValue, Specs } from "./protocol";
import { layoutNode, type NodeView } from "./render/layout";
import { SpatialGrid } from "./render/spatial";

export class Scene {
  readonly nodes = new Map<string, NodeView>();
  readonly edges = new Map<string, EdgeValue>();
  readonly groups = new Map<string, GroupValue>();
  readonly grid = new SpatialGrid();
  /** Nodes with a preview image get a taller body. */
  readonly withPreview = new Set<string>();
  private z = new Map<string, number>();
  private zTop = 0;
  version = 0;
  private geom: { version: number; xy: Float64Array; n: number } | null = null;
  private listeners = new Set<() => void>();
  private unobserve: () => void;

  constructor(readonly gdoc: GraphDoc, private specs: Specs = {}) {
    const onNodes = (events: Y.YEvent<any>[]): void => this.onNodeEvents(events);
    const onEdges = (e: Y.YMapEvent<EdgeValue>): void => this.onMapEvent(e, gdoc.edges, this.edges);
    const onGroups = (e: Y.YMapEvent<GroupValue>): void => this.onMapEvent(e, gdoc.groups, this.groups);
    gdoc.nodes.observeDeep(onNodes);
    gdoc.edges.observe(onEdges);
    gdoc.groups.observe(onGroups);
    this.unobserve = () => {
      gdoc.nodes.unobserveDeep(onNodes);
      gdoc.edges.unobserve(onEdges);
      gdoc.groups.unobserve(onGroups);
    };
    this.rebuild();
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(): void {
    this.version++;
    for (const fn of this.listeners) fn();
  }

  setSpecs(specs: Specs): void {
    this.specs = specs;
    this.rebuild();
  }

  rebuild(): void {
    this.nodes.clear();
    this.grid.clear();
    for (const id of this.gdoc.nodes.keys()) this.refreshNode(id);
    this.edges.clear();
    for (const [k, v] of this.gdoc.edges.entries()) this.edges.set(k, v);
    this.groups.clear();
    for (const [k, v] of this.gdoc.groups.entries()) this.groups.set(k, v);
    this.changed();
  }

  /** Re-reads one node from the doc (or drops it when gone). */
  refreshNode(id: string): void {
    const m = this.gdoc.nodes.get(id);
    if (!(m instanceof Y.Map)) {
      this.nodes.delete(id);
      this.grid.remove(id);
      return;
    }
    const d = readNodeFields(id, m);
    const spec = this.specs[d.type];
    // Unknown types lay out their params as widgets, so they need them now.
    const n = layoutNode(d, spec, this.withPreview.has(id), spec ? () => readParams(m) : readParams(m));
    this.nodes.set(id, n);
    this.grid.insert(n);
    if (!this.z.has(id)) this.z.set(id, ++this.zTop);
  }

  private onNodeEvents(events: Y.YEvent<any>[]): void {
    const touched = new Set<string>();
    for (const ev of events) {
      if (ev.target === this.gdoc.nodes) {
        for (const key of ev.changes.keys.keys()) touched.add(key);
      } else if (typeof ev.path[0] === "string") {
        touched.add(ev.path[0]);
      }
    }
    for (const id of touched) this.refreshNode(id);
    this.changed();
  }

  private onMapEvent<T>(e: Y.YMapEvent<T>, src: Y.Map<T>, dst: Map<string, T>): void {
    for (const key of e.changes.keys.keys()) {
      const v = src.get(key);
      if (v === undefined) dst.delete(key);
      else dst.set(key, v);
    }
    this.changed();
  }

  setPreview(id: string, on: boolean): void {
    const had = this.withPreview.has(id);
    if (on === had) return;
    if (on) this.withPreview.add(id);
    else this.withPreview.delete(id);
    this.refreshNode(id);
    this.changed();
  }

  zOf(n: NodeView): number {
    return this.z.get(n.id) ?? 0;
  }

  raise(ids: Iterable<string>): void {
    for (const id of ids) this.z.set(id, ++this.zTop);
  }

  /**
   * Edge endpoints as a flat array [x0, y0, x1, y1, ...] in graph units, rebuilt only when the
   * scene changed: the per-frame edge loop is then plain arithmetic with no allocation.
   */
  edgeGeometry(): { xy: Float64Array; n: number } {
    if (this.geom && this.geom.version === this.version) return this.geom;
    const xy = new Float64Array(this.edges.size * 4);
    let n = 0;
    for (const e of this.edges.values()) {
      const s = this.nodes.get(e.src), t = this.nodes.get(e.dst);
      if (!s || !t) continue;
      const o = s.outputs[e.src_output], i = t.inputs.find((p) => p.name === e.dst_input);
      xy[n * 4] = s.x + (o ? o.x : s.w);
      xy[n * 4 + 1] = s.y + (o ? o.y : 13);
      xy[n * 4 + 2] = t.x + (i ? i.x : 0);
      xy[n * 4 + 3] = t.y + (i ? i.y : 13);
      n++;
    }
    this.geom = { version: this.version, xy, n };
    return this.geom;
  }

  /** Edges arriving at / leaving a node. */
  edgesOf(id: string): EdgeValue[] {
    const out: EdgeValue[] = [];
    for (const e of this.edges.values()) if (e.src === id || e.dst === id) out.push(e);
    return out;
  }

  edgeInto(dst: string, input: string): EdgeValue | undefined {
    return this.edges.get(`${dst}:${input}`);
  }

  spec(type: string) {
    return this.specs[type];
  }

  allSpecs(): Specs {
    return this.specs;
  }

  /** Notify listeners of a change that is not in the doc (run state, images, selection). */
  touch(): void {
    this.changed();
  }

  destroy(): void {
    this.unobserve();
    this.listeners.clear();
  }
}
