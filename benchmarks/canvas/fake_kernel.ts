/**
 * A stand-in for the kernel side of the canvas protocol (docs/canvas-protocol.md), for running the real
 * widget bundle outside Jupyter: an authoritative Y.Doc, a relay to every attached view, and
 * fake anywidget models (get/on/off/send). Replies are synchronous, like a local comm.
 */
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import type { SynthEdge, SynthNode } from "./synthetic";

type Handler = (...args: any[]) => void;

export class FakeModel {
  private handlers = new Map<string, Set<Handler>>();
  constructor(private kernel: FakeKernel, private traits: Record<string, unknown>) {}
  get(name: string): unknown { return this.traits[name]; }
  on(ev: string, fn: Handler): void {
    if (!this.handlers.has(ev)) this.handlers.set(ev, new Set());
    this.handlers.get(ev)!.add(fn);
  }
  off(ev?: string | null, fn?: Handler | null): void {
    if (!ev) { this.handlers.clear(); return; }
    if (fn) this.handlers.get(ev)?.delete(fn); else this.handlers.delete(ev);
  }
  send(content: any, _cb?: unknown, buffers: ArrayBufferView[] = []): void {
    this.kernel.receive(this, content, buffers);
  }
  deliver(content: unknown, buffers: Uint8Array[] = []): void {
    for (const fn of this.handlers.get("msg:custom") ?? []) fn(content, buffers.map((b) => new DataView(b.buffer, b.byteOffset, b.byteLength)));
  }
}

export class FakeKernel {
  readonly doc = new Y.Doc();
  readonly views = new Set<FakeModel>();
  readonly sent: unknown[] = [];
  /** The loaded state, encoded once: a real kernel encodes in Python, not in the page. */
  private snapshot: Uint8Array | null = null;

  model(traits: Record<string, unknown>): FakeModel {
    const m = new FakeModel(this, traits);
    this.views.add(m);
    return m;
  }

  load(nodes: SynthNode[], edges: SynthEdge[]): void {
    const ymap = this.doc.getMap("nodes"), yedges = this.doc.getMap("edges");
    this.doc.transact(() => {
      for (const n of nodes) {
        const m = new Y.Map<unknown>();
        const params = new Y.Map<unknown>();
        for (const [k, v] of Object.entries(n.params)) params.set(k, v);
        m.set("type", n.type); m.set("x", n.x); m.set("y", n.y); m.set("params", params);
        ymap.set(n.id, m);
      }
      for (const e of edges) yedges.set(`${e.dst}:${e.dst_input}`, { ...e });
    });
    this.snapshot = Y.encodeStateAsUpdate(this.doc);
    this.doc.on("update", () => { this.snapshot = null; });
  }

  /** hello -> our step 1; a view's step 1 -> step 2; updates -> applied and relayed. */
  receive(from: FakeModel, content: any, buffers: ArrayBufferView[]): void {
    this.sent.push(content);
    if (content.t === "hello") { from.deliver({ t: "y" }, [this.frame((enc) => syncProtocol.writeSyncStep1(enc, this.doc))]); return; }
    if (content.t !== "y" || !buffers.length) return;
    const b = buffers[0];
    const bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    const dec = decoding.createDecoder(bytes);
    if (decoding.readVarUint(dec) !== 0) { this.relay(from, bytes); return; }
    const kind = decoding.readVarUint(dec);
    if (kind === syncProtocol.messageYjsSyncStep1) {
      const sv = decoding.readVarUint8Array(dec);
      const update = this.snapshot && sv.length <= 1 ? this.snapshot : Y.encodeStateAsUpdate(this.doc, sv);
      from.deliver({ t: "y" }, [this.frame((enc) => {
        encoding.writeVarUint(enc, syncProtocol.messageYjsSyncStep2);
        encoding.writeVarUint8Array(enc, update);
      })]);
      return;
    }
    Y.applyUpdate(this.doc, decoding.readVarUint8Array(dec), from);
    this.relay(from, bytes);
  }

  private frame(write: (enc: encoding.Encoder) => void): Uint8Array {
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, 0);
    write(enc);
    return encoding.toUint8Array(enc);
  }

  private relay(from: FakeModel, bytes: Uint8Array): void {
    for (const v of this.views) if (v !== from) v.deliver({ t: "y" }, [bytes]);
  }
}
