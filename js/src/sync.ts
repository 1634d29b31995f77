/**
 * A y-sync provider over the widget's custom messages (the kernel is the hub).
 *
 * Protocol (docs/canvas-protocol.md): on start send `{"t":"hello"}` then sync step 1; every `{"t":"y"}`
 * buffer is y-websocket framed (varuint 0 = sync step1/step2/update, 1 = awareness).
 * Local doc updates (any origin other than this provider) go out as update messages;
 * remote ones are applied with this provider as the origin so they are never echoed and
 * never land on a view's undo stack. On `{"t":"error"}` (the kernel rejected an update)
 * the view resyncs by sending step 1 again: the kernel's step 2 brings it back in line.
 */
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as awarenessProtocol from "y-protocols/awareness";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import {
  Y_MESSAGE_AWARENESS, Y_MESSAGE_SYNC, toBytes,
  type FromKernel, type WidgetModel, type WireBuffer,
} from "./protocol";

export interface SyncOptions {
  /** Called for non-"y" kernel messages (events, images, errors, state). */
  onMessage?: (msg: FromKernel, buffers: WireBuffer[]) => void;
  /** Called when an incoming buffer cannot be decoded. */
  onError?: (err: unknown) => void;
  /**
   * Sync awareness over this channel too (default). Off when presence has a channel of its
   * own: a collaborative document's room, whose doc this provider then bridges to a kernel.
   */
  awareness?: boolean;
}

export class CommProvider {
  /** The awareness synced over the channel; `null` when presence travels elsewhere. */
  readonly awareness: awarenessProtocol.Awareness | null;
  synced = false;
  /** Total ms spent applying kernel y messages (decode + integrate + observers). */
  applyMs = 0;
  private syncedWaiters: Array<() => void> = [];
  private readonly onDocUpdate: (update: Uint8Array, origin: unknown) => void;
  private readonly onAwareness: (ch: { added: number[]; updated: number[]; removed: number[] }, origin: unknown) => void;
  private readonly onCustom: (content: FromKernel, buffers?: WireBuffer[]) => void;

  constructor(readonly doc: Y.Doc, private model: WidgetModel, private opts: SyncOptions = {}) {
    this.awareness = opts.awareness === false ? null : new awarenessProtocol.Awareness(doc);
    this.onDocUpdate = (update, origin) => {
      if (origin !== this) this.sendSync((enc) => syncProtocol.writeUpdate(enc, update));
    };
    this.onAwareness = ({ added, updated, removed }, origin) => {
      if (origin === this) return;
      const changed = added.concat(updated, removed);
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, Y_MESSAGE_AWARENESS);
      encoding.writeVarUint8Array(enc, awarenessProtocol.encodeAwarenessUpdate(this.awareness as awarenessProtocol.Awareness, changed));
      this.sendRaw(encoding.toUint8Array(enc));
    };
    this.onCustom = (content, buffers) => this.receive(content, buffers ?? []);
    doc.on("update", this.onDocUpdate);
    this.awareness?.on("update", this.onAwareness);
    model.on("msg:custom", this.onCustom);
  }

  /** Announce the view and ask the kernel for what we lack. */
  start(): void {
    this.model.send({ t: "hello" });
    this.sendStep1();
  }

  sendStep1(): void {
    this.sendSync((enc) => syncProtocol.writeSyncStep1(enc, this.doc));
  }

  whenSynced(): Promise<void> {
    return this.synced ? Promise.resolve() : new Promise((res) => this.syncedWaiters.push(res));
  }

  private sendSync(write: (enc: encoding.Encoder) => void): void {
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, Y_MESSAGE_SYNC);
    write(enc);
    this.sendRaw(encoding.toUint8Array(enc));
  }

  private sendRaw(bytes: Uint8Array): void {
    this.model.send({ t: "y" }, undefined, [bytes]);
  }

  private receive(content: FromKernel, buffers: WireBuffer[]): void {
    if (!content || typeof content !== "object") return;
    if (content.t === "y") {
      if (buffers.length > 0) this.receiveY(toBytes(buffers[0]));
      return;
    }
    if (content.t === "error") this.sendStep1();
    this.opts.onMessage?.(content, buffers);
  }

  /** Applies one framed y message; a reply (step 2 for a step 1) goes straight back. */
  receiveY(bytes: Uint8Array): void {
    const t0 = performance.now();
    try {
      const dec = decoding.createDecoder(bytes);
      const kind = decoding.readVarUint(dec);
      if (kind === Y_MESSAGE_SYNC) {
        const enc = encoding.createEncoder();
        encoding.writeVarUint(enc, Y_MESSAGE_SYNC);
        // Remote updates are never sent back, so the "update" listener is detached while they
        // apply: with it attached yjs re-encodes every incoming update (the whole graph on the
        // first sync) just for us to drop it. Safe because no observer writes to the doc.
        this.doc.off("update", this.onDocUpdate);
        let sub: number;
        try {
          // Rethrow instead of y-protocols' default console.error so it is reported once.
          sub = syncProtocol.readSyncMessage(dec, enc, this.doc, this, (err) => { throw err; });
        } finally {
          this.doc.on("update", this.onDocUpdate);
        }
        if (encoding.length(enc) > 1) this.sendRaw(encoding.toUint8Array(enc));
        if (sub === syncProtocol.messageYjsSyncStep2) this.markSynced();
      } else if (kind === Y_MESSAGE_AWARENESS && this.awareness) {
        awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(dec), this);
      }
    } catch (err) {
      this.opts.onError?.(err);
    } finally {
      this.applyMs += performance.now() - t0;
    }
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    for (const fn of this.syncedWaiters.splice(0)) fn();
  }

  destroy(): void {
    if (this.awareness) {
      awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], "destroy");
      this.awareness.off("update", this.onAwareness);
      this.awareness.destroy();
    }
    this.doc.off("update", this.onDocUpdate);
    this.model.off("msg:custom", this.onCustom);
  }
}
