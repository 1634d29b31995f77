/**
 * `SocketModel`: the `WidgetModel` seam over a WebSocket to a graph document's room on
 * `vortex serve` (`vortex_jupyter/server/rooms.py`), so `CanvasApp` and its `CommProvider` run
 * unchanged in a page with no Jupyter.
 *
 * Wire: binary frames are y-websocket frames (the `{"t":"y"}` buffers of the comm protocol);
 * text frames are the comm protocol's JSON messages. A message with buffers (an `image`, a
 * gallery's thumbnails) comes as its text with `"buffers": n`, then its n buffers as the next
 * n binary frames (never y frames). On every (re)connect the model says
 * `{"t":"hello"}` (the room answers with the node specs, which become the `specs` attribute),
 * and the room sends sync step 1 and step 2: the provider answers step 1 with what the room
 * lacks, so edits made while disconnected arrive. Frames sent while disconnected are dropped
 * (that exchange replaces them). A dropped connection is retried with backoff; closes that
 * retrying cannot fix (the document is gone: 4404; policy: 1008, 4401) end it.
 */
import type { ToKernel, WidgetModel, WireBuffer } from "./protocol";
import { toBytes } from "./protocol";

type Listener = (...args: any[]) => void;

/** The part of the DOM `WebSocket` this model uses (a seam: tests pass a fake). */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type SocketStatus = "connecting" | "open" | "retrying" | "closed";

export interface SocketOptions {
  /** Opens a socket (default: `new WebSocket(url)`). */
  connect?: (url: string) => SocketLike;
  /** Told whenever the connection changes; `detail` says why it closed. */
  onStatus?: (status: SocketStatus, detail: string) => void;
  /** Schedules a retry (default: `setTimeout`). */
  later?: (fn: () => void, ms: number) => unknown;
  /** Backoff bounds in ms (default 500 .. 10,000). */
  minRetryMs?: number;
  maxRetryMs?: number;
}

const OPEN = 1;
/** Close codes after which reconnecting cannot help. */
export const FINAL_CLOSE_CODES = new Set([1008, 4401, 4403, 4404]);

/** The room's WebSocket URL for document `graph`, from the page's URL (`token` as a query). */
export function roomUrl(pageUrl: string, graph: string, token: string | null): string {
  const url = new URL(`api/v1/graphs/${encodeURIComponent(graph)}/room`, pageUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = token ? `?token=${encodeURIComponent(token)}` : "";
  url.hash = "";
  return url.toString();
}

export class SocketModel implements WidgetModel {
  status: SocketStatus = "connecting";
  private listeners = new Map<string, Set<Listener>>();
  private attrs: Record<string, unknown> = { specs: {}, height: 0 };
  private ws: SocketLike | null = null;
  private failures = 0;
  private ended = false;
  /** A message whose buffers are still to come as the next binary frames. */
  private pending: { msg: Record<string, unknown>; left: number; buffers: Uint8Array[] } | null = null;

  constructor(readonly url: string, private opts: SocketOptions = {}) {
    this.open();
  }

  get(name: string): unknown {
    return this.attrs[name];
  }

  set(name: string, value: unknown): void {
    this.attrs[name] = value;
    this.emit(`change:${name}`);
  }

  on(event: string, cb: Listener): void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(cb);
  }

  off(event?: string | null, cb?: Listener | null): void {
    if (!event) { this.listeners.clear(); return; }
    if (!cb) { this.listeners.delete(event); return; }
    this.listeners.get(event)?.delete(cb);
  }

  send(content: ToKernel, _callbacks?: unknown, buffers?: WireBuffer[]): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return; // the resync on reconnecting brings it over
    if (content.t === "y") {
      for (const buf of buffers ?? []) ws.send(toBytes(buf));
    } else if (content.t !== "hello") { // (hello: said by `open` on every connection)
      ws.send(JSON.stringify(content));
    }
  }

  /** Close for good (the page goes away). */
  close(): void {
    this.ended = true;
    this.ws?.close(1000, "closed");
    this.ws = null;
  }

  private open(): void {
    const ws = this.opts.connect ? this.opts.connect(this.url) : (new WebSocket(this.url) as unknown as SocketLike);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.pending = null;
    this.setStatus("connecting", "");
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.failures = 0;
      this.setStatus("open", "");
      ws.send(JSON.stringify({ t: "hello" }));
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => this.closed(ws, ev.code, ev.reason || (opened ? "" : "cannot reach the room (is the server up? does it want a ?token=?)"));
    ws.onerror = () => undefined; // a close follows
  }

  private receive(data: unknown): void {
    if (typeof data !== "string") {
      const bytes = data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? toBytes(data) : null;
      if (!bytes) return;
      const p = this.pending;
      if (!p) { this.emit("msg:custom", { t: "y" }, [bytes]); return; }
      p.buffers.push(bytes);
      if (--p.left === 0) { this.pending = null; this.emit("msg:custom", p.msg, p.buffers); }
      return;
    }
    let msg: unknown;
    try { msg = JSON.parse(data); } catch { return; }
    if (!msg || typeof msg !== "object") return;
    const m = msg as Record<string, unknown>;
    if (m.t === "specs") { this.set("specs", m.specs ?? {}); return; }
    const n = m.buffers;
    delete m.buffers;
    if (typeof n === "number" && n > 0) { this.pending = { msg: m, left: n, buffers: [] }; return; }
    this.emit("msg:custom", m, []);
  }

  private closed(ws: SocketLike, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.ended) { this.setStatus("closed", reason || "closed"); return; }
    if (FINAL_CLOSE_CODES.has(code)) {
      this.ended = true;
      this.setStatus("closed", reason || `closed (${code})`);
      return;
    }
    const ms = retryDelay(this.failures++, this.opts.minRetryMs ?? 500, this.opts.maxRetryMs ?? 10_000);
    this.setStatus("retrying", `${reason || "connection lost"}; retrying in ${Math.round(ms / 100) / 10} s`);
    const later = this.opts.later ?? ((fn: () => void, t: number) => setTimeout(fn, t));
    later(() => { if (!this.ended) this.open(); }, ms);
  }

  private setStatus(status: SocketStatus, detail: string): void {
    this.status = status;
    this.opts.onStatus?.(status, detail);
  }

  private emit(event: string, ...args: unknown[]): void {
    for (const cb of [...(this.listeners.get(event) ?? [])]) cb(...args);
  }
}

/** Exponential backoff: `min`, 2x each failure, at most `max`. */
export function retryDelay(failures: number, min: number, max: number): number {
  return Math.min(max, min * 2 ** Math.min(failures, 20));
}
