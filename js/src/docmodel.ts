/**
 * Reading and writing the graph in the Y doc, following the schema of docs/canvas-protocol.md.
 *
 * Every write goes through `GraphDoc` so that it runs in one transaction with the view's
 * origin: the sync provider forwards those to the kernel, and the view's UndoManager
 * (tracking only that origin) makes undo/redo per user.
 */
import * as Y from "yjs";
import {
  MODE_ALWAYS, ROOT_EDGES, ROOT_GROUPS, ROOT_META, ROOT_NODES, edgeKey, newNodeId, readMode,
  type EdgeValue, type GroupValue,
} from "./protocol";

export interface NodeData {
  id: string;
  type: string;
  title?: string;
  x: number;
  y: number;
  w?: number;
  h?: number;
  /** ComfyUI mode: 0 always (absent in the doc), 2 muted, 4 bypassed. */
  mode?: number;
  params: Record<string, unknown>;
}

/** Params written by the browser: integers beyond 2^53-1 become decimal strings (docs/canvas-protocol.md). */
export function paramToDoc(v: unknown): unknown {
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  return v;
}

export class GraphDoc {
  readonly nodes: Y.Map<Y.Map<unknown>>;
  readonly edges: Y.Map<EdgeValue>;
  readonly groups: Y.Map<GroupValue>;
  readonly meta: Y.Map<unknown>;

  constructor(readonly doc: Y.Doc, readonly origin: object) {
    this.nodes = doc.getMap(ROOT_NODES);
    this.edges = doc.getMap(ROOT_EDGES);
    this.groups = doc.getMap(ROOT_GROUPS);
    this.meta = doc.getMap(ROOT_META);
  }

  transact(fn: () => void): void {
    this.doc.transact(fn, this.origin);
  }

  readNode(id: string): NodeData | null {
    const m = this.nodes.get(id);
    return m ? readNodeMap(id, m) : null;
  }

  addNode(data: Omit<NodeData, "id"> & { id?: string }): string {
    const id = data.id ?? newNodeId();
    this.transact(() => this.nodes.set(id, makeNodeMap(data)));
    return id;
  }

  /** Moves nodes; one transaction per call (one per drag step). */
  moveNodes(moves: Iterable<[string, number, number]>): void {
    this.transact(() => {
      for (const [id, x, y] of moves) {
        const m = this.nodes.get(id);
        if (!m) continue;
        m.set("x", x);
        m.set("y", y);
      }
    });
  }

  /** Sets a node's size (graph units) in one transaction. */
  setSize(id: string, w: number, h: number): void {
    this.transact(() => {
      const m = this.nodes.get(id);
      m?.set("w", w);
      m?.set("h", h);
    });
  }

  setParam(id: string, name: string, value: unknown): void {
    this.transact(() => {
      const params = this.nodes.get(id)?.get("params");
      if (params instanceof Y.Map) params.set(name, paramToDoc(value));
    });
  }

  setTitle(id: string, title: string): void {
    this.transact(() => this.nodes.get(id)?.set("title", title));
  }

  /** Sets the mode of several nodes in one transaction (one undo step); 0 removes the field. */
  setModes(ids: Iterable<string>, mode: number): void {
    this.transact(() => {
      for (const id of ids) {
        const m = this.nodes.get(id);
        if (!m) continue;
        if (mode !== MODE_ALWAYS) m.set("mode", mode);
        else if (m.has("mode")) m.delete("mode");
      }
    });
  }

  connect(e: EdgeValue): void {
    this.transact(() => this.edges.set(edgeKey(e.dst, e.dst_input), { ...e }));
  }

  disconnect(dst: string, dstInput: string): void {
    this.transact(() => this.edges.delete(edgeKey(dst, dstInput)));
  }

  /** Deletes nodes, their edges and nothing else, in one transaction. */
  deleteNodes(ids: Iterable<string>): void {
    const gone = new Set(ids);
    this.transact(() => {
      for (const [key, e] of this.edges.entries()) {
        if (gone.has(e.src) || gone.has(e.dst)) this.edges.delete(key);
      }
      for (const id of gone) this.nodes.delete(id);
    });
  }

  setGroup(id: string, g: GroupValue): void {
    this.transact(() => this.groups.set(id, { ...g }));
  }

  deleteGroup(id: string): void {
    this.transact(() => this.groups.delete(id));
  }
}

export function makeNodeMap(data: Omit<NodeData, "id">): Y.Map<unknown> {
  const params = new Y.Map<unknown>();
  for (const [k, v] of Object.entries(data.params)) params.set(k, paramToDoc(v));
  const m = new Y.Map<unknown>();
  m.set("type", data.type);
  if (data.title) m.set("title", data.title);
  m.set("x", data.x);
  m.set("y", data.y);
  if (data.w !== undefined) m.set("w", data.w);
  if (data.h !== undefined) m.set("h", data.h);
  const mode = readMode(data.mode);
  if (mode !== MODE_ALWAYS) m.set("mode", mode);
  m.set("params", params);
  return m;
}

export function readNodeMap(id: string, m: Y.Map<unknown>): NodeData {
  return { ...readNodeFields(id, m), params: readParams(m) };
}

export function readParams(m: Y.Map<unknown>): Record<string, unknown> {
  const params = m.get("params");
  return params instanceof Y.Map ? (params.toJSON() as Record<string, unknown>) : {};
}

/** A node's fields without its params (cheap; the scene reads params lazily). */
export function readNodeFields(id: string, m: Y.Map<unknown>): Omit<NodeData, "params"> {
  const num = (k: string): number | undefined => {
    const v = m.get(k);
    return typeof v === "number" && Number.isFinite(v) ? v : undefined;
  };
  const title = m.get("title");
  return {
    id,
    type: String(m.get("type") ?? "?"),
    title: typeof title === "string" && title ? title : undefined,
    x: num("x") ?? 0,
    y: num("y") ?? 0,
    w: num("w"),
    h: num("h"),
    mode: readMode(m.get("mode")),
  };
}
