/**
 * Talking to a kernel from JupyterLab: the comm targets of `vortex_jupyter/lab/views.py`,
 * and `CommModel`, the anywidget-model seam (`WidgetModel`) over a plain kernel comm, so a
 * `CanvasApp` runs unchanged in a document panel or a notebook output.
 */
import type { Kernel, KernelMessage } from "@jupyterlab/services";
import type { JSONObject, JSONValue } from "@lumino/coreutils";
import type { ToKernel, WidgetModel, WireBuffer } from "../protocol";

export const CANVAS_TARGET = "vortex.canvas";
export const DOCUMENT_TARGET = "vortex.document";

/** Imported silently before a document opens its comm: registers the comm targets. */
const BOOTSTRAP = "import vortex_jupyter.lab.views as _vx_views\n_vx_views.register_targets()\ndel _vx_views\n";

/**
 * Make sure the kernel can take our comms. Rejects with a message a user can act on when
 * the kernel has no vortex_jupyter (another environment's kernel was picked).
 */
export async function bootstrap(kernel: Kernel.IKernelConnection): Promise<void> {
  const future = kernel.requestExecute({ code: BOOTSTRAP, silent: true, store_history: false });
  let error = "";
  future.onIOPub = (msg: KernelMessage.IIOPubMessage): void => {
    if (msg.header.msg_type === "error") {
      const c = msg.content as KernelMessage.IErrorMsg["content"];
      error = `${c.ename}: ${c.evalue}`;
    }
  };
  const reply = await future.done;
  if (error || reply.content.status !== "ok") {
    throw new Error(
      `the kernel "${kernel.name}" cannot run vortex-jupyter (${error || reply.content.status}); ` +
      "pick a kernel whose Python has it installed (pip install vortex-jupyter)",
    );
  }
}

type Listener = (...args: any[]) => void;

/** What a `CommModel` does with the messages that are not the canvas's own. */
export interface CommHooks {
  /** Return true when the message was handled (it is then not given to the canvas). */
  intercept?(msg: Record<string, unknown>, buffers: DataView[]): boolean;
  /** The kernel closed the comm (it restarted, or refused the open). */
  closed?(): void;
}

/**
 * `WidgetModel` over a kernel comm: `send` is `comm.send`, kernel messages are
 * `msg:custom` events, and `{"t":"specs"}` messages become the `specs` attribute.
 */
export class CommModel implements WidgetModel {
  private listeners = new Map<string, Set<Listener>>();
  private attrs: Record<string, unknown> = { specs: {}, height: 0 };
  private comm: Kernel.IComm | null = null;

  constructor(private hooks: CommHooks = {}) {}

  get connected(): boolean {
    return !!this.comm && !this.comm.isDisposed;
  }

  /** Open a comm on `kernel` to `target` with `data`; the model then talks through it. */
  open(kernel: Kernel.IKernelConnection, target: string, data: JSONObject): void {
    this.close();
    const comm = kernel.createComm(target);
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg): void => {
      this.receive(msg.content.data as Record<string, unknown>, (msg.buffers ?? []) as DataView[]);
    };
    comm.onClose = (): void => {
      if (this.comm === comm) this.comm = null;
      this.hooks.closed?.();
    };
    this.comm = comm;
    comm.open(data);
  }

  close(): void {
    const comm = this.comm;
    this.comm = null;
    if (comm && !comm.isDisposed) {
      try { comm.close(); } catch { /* the kernel is gone: nothing to tell it */ }
    }
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
    if (!this.comm || this.comm.isDisposed) return; // reconnecting: the next hello resyncs
    this.comm.send(content as unknown as JSONValue, undefined, buffers as (ArrayBuffer | ArrayBufferView)[] | undefined);
  }

  /** A message from the kernel (public for tests). */
  receive(msg: Record<string, unknown>, buffers: DataView[]): void {
    if (!msg || typeof msg !== "object") return;
    if (msg.t === "specs") { this.set("specs", msg.specs ?? {}); return; }
    if (this.hooks.intercept?.(msg, buffers)) return;
    this.emit("msg:custom", msg, buffers);
  }

  private emit(event: string, ...args: unknown[]): void {
    for (const cb of [...(this.listeners.get(event) ?? [])]) cb(...args);
  }
}
