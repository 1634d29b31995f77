/**
 * A stand-in for the kernel side of docs/canvas-protocol.md: an authoritative Y.Doc that answers hello with
 * its step 1, a view's step 1 with step 2, and applies + relays updates to every other view.
 * `reject` makes it refuse the next update with an `{"t":"error"}` (as the kernel does for a
 * malformed or oversized one).
 */
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import type { WidgetModel, WireBuffer } from "../../src/protocol";
import { toBytes } from "../../src/protocol";

type Handler = (...args: any[]) => void;

export class FakeComm implements WidgetModel {
  readonly sent: Array<{ content: any; bytes?: Uint8Array }> = [];
  private handlers = new Map<string, Set<Handler>>();
  constructor(private relay: Relay, private traits: Record<string, unknown> = {}) {}
  get(name: string): unknown { return this.traits[name]; }
  on(ev: string, fn: Handler): void {
    if (!this.handlers.has(ev)) this.handlers.set(ev, new Set());
    this.handlers.get(ev)!.add(fn);
  }
  off(ev?: string | null, fn?: Handler | null): void {
    if (ev && fn) this.handlers.get(ev)?.delete(fn);
  }
  send(content: any, _cb?: unknown, buffers: WireBuffer[] = []): void {
    const bytes = buffers.length ? toBytes(buffers[0]).slice() : undefined;
    this.sent.push({ content, bytes });
    this.relay.receive(this, content, bytes);
  }
  deliver(content: unknown, bytes?: Uint8Array): void {
    const bufs = bytes ? [new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)] : [];
    for (const fn of this.handlers.get("msg:custom") ?? []) fn(content, bufs);
  }
  listeners(ev: string): number { return this.handlers.get(ev)?.size ?? 0; }
}

export class Relay {
  readonly doc = new Y.Doc();
  readonly comms: FakeComm[] = [];
  rejectNext = false;

  comm(traits: Record<string, unknown> = {}): FakeComm {
    const c = new FakeComm(this, traits);
    this.comms.push(c);
    return c;
  }

  receive(from: FakeComm, content: any, bytes?: Uint8Array): void {
    if (content.t === "hello") { from.deliver({ t: "y" }, frame((e) => syncProtocol.writeSyncStep1(e, this.doc))); return; }
    if (content.t !== "y" || !bytes) return;
    const dec = decoding.createDecoder(bytes);
    const kind = decoding.readVarUint(dec);
    if (kind === 1) { this.broadcast(from, bytes); return; }
    const sub = decoding.readVarUint(dec);
    if (sub === syncProtocol.messageYjsSyncStep1) {
      const sv = decoding.readVarUint8Array(dec);
      from.deliver({ t: "y" }, frame((e) => {
        encoding.writeVarUint(e, syncProtocol.messageYjsSyncStep2);
        encoding.writeVarUint8Array(e, Y.encodeStateAsUpdate(this.doc, sv));
      }));
      return;
    }
    if (this.rejectNext) {
      this.rejectNext = false;
      from.deliver({ t: "error", code: "VE-600", message: "update rejected" });
      return;
    }
    Y.applyUpdate(this.doc, decoding.readVarUint8Array(dec), from);
    this.broadcast(from, bytes);
  }

  /** A kernel-side edit (like `g.add` in Python), relayed to every view. */
  edit(fn: (doc: Y.Doc) => void): void {
    const onUpdate = (u: Uint8Array): void => {
      const msg = frame((e) => syncProtocol.writeUpdate(e, u));
      for (const c of this.comms) c.deliver({ t: "y" }, msg);
    };
    this.doc.on("update", onUpdate);
    this.doc.transact(() => fn(this.doc), "kernel");
    this.doc.off("update", onUpdate);
  }

  private broadcast(from: FakeComm, bytes: Uint8Array): void {
    for (const c of this.comms) if (c !== from) c.deliver({ t: "y" }, bytes);
  }
}

export function frame(write: (e: encoding.Encoder) => void): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  write(e);
  return encoding.toUint8Array(e);
}
