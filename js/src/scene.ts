/**
 * The view's read model of the graph: laid-out nodes, edges and groups mirrored from the
 * Y doc, with a spatial grid for culling and hit-testing.
 *
 * State: rebuilt incrementally from Y events (only the nodes an event touches are laid out
 * again); `version` bumps on every change so the renderer and the accessible list know when
 * to redraw. Nothing here writes to the doc.
 *
 * Local geometry: a gesture that writes the doc only on release (resizing a node, moving or
 * resizing a group) shows its state meanwhile with `showLocal`; those values win over the
 * doc's until `clearLocal`, so a remote edit during the gesture does not make it jump.
 */
import * as Y from "yjs";
import { GraphDoc, readNodeFields, readParams } from "./docmodel";
import type { EdgeValue, GroupValue, Specs } from "./protocol";
import { layoutNode, type NodeView } from "./render/layout";
import { SpatialGrid } from "./render/spatial";

/** Geometry a gesture shows before it is written to the doc. */
export interface LocalGeom { x?: number; y?: number; w?: number; h?: number }

export class Scene {
  readonly nodes = new Map<string, NodeView>();
  readonly edges = new Map<string, EdgeValue>();
  readonly groups = new Map<string, GroupValue>();
  readonly grid = new SpatialGrid();
  /** Nodes with a preview image get a taller body. */
  readonly withPreview = new Set<string>();
  private localNodes = new Map<string, LocalGeom>();
  private localGroups = new Map<string, GroupValue>();
  private z = new Map<string, number>();
  private zTop = 0;
  version = 0;
  private geom: { version: number; xy: Float64Array; n: number } | null = null;
  private listeners = new Set<() => void>();
  private unobserve: () => void;

  constructor(readonly gdoc: GraphDoc, private specs: Specs = {}) {
    const onNodes = (events: Y.YEvent<any>[]): void => this.onNodeEvents(events);
    const onEdges = (e: Y.YMapEvent<EdgeValue>): void => this.onMapEvent(e, gdoc.edges, this.edges);
    const onGroups = (e: Y.YMapEvent<GroupValue>): void =>
      this.onMapEvent(e, gdoc.groups, this.groups, this.localGroups);
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
    for (const [k, v] of this.gdoc.groups.entries()) this.groups.set(k, this.localGroups.get(k) ?? v);
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
    const fields = readNodeFields(id, m), local = this.localNodes.get(id);
    const d = local ? { ...fields, ...local } : fields;
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

  private onMapEvent<T>(e: Y.YMapEvent<T>, src: Y.Map<T>, dst: Map<string, T>, local?: Map<string, T>): void {
    for (const key of e.changes.keys.keys()) {
      const v = src.get(key);
      if (v === undefined) dst.delete(key);
      else dst.set(key, local?.get(key) ?? v);
    }
    this.changed();
  }

  /** Shows nodes and groups with gesture geometry, without writing the doc. */
  showLocal(nodes: Iterable<[string, LocalGeom]>, groups: Iterable<[string, GroupValue]> = []): void {
    for (const [id, geom] of nodes) {
      if (!this.gdoc.nodes.has(id)) continue;
      this.localNodes.set(id, geom);
      this.refreshNode(id);
    }
    for (const [id, g] of groups) {
      if (!this.gdoc.groups.has(id)) continue;
      this.localGroups.set(id, g);
      this.groups.set(id, g);
    }
    this.changed();
  }

  /** Drops all gesture geometry: the doc's values show again. */
  clearLocal(): void {
    if (!this.localNodes.size && !this.localGroups.size) return;
    const ids = [...this.localNodes.keys()];
    this.localNodes.clear();
    for (const id of ids) this.refreshNode(id);
    for (const id of this.localGroups.keys()) {
      const v = this.gdoc.groups.get(id);
      if (v === undefined) this.groups.delete(id);
      else this.groups.set(id, v);
    }
    this.localGroups.clear();
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
