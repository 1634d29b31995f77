/**
 * The canvas as a notebook output: JupyterLab's renderer for `MIME`, the data a displayed
 * graph carries (`vortex_jupyter/lab/views.py`: `{"graph": <session id>}`).
 *
 * It is declared safe: it draws the graph from the kernel's data and never inserts HTML, so
 * JupyterLab shows it in untrusted outputs too. That is what lets every user of a notebook
 * shared under real-time collaboration see and edit the live canvas (other users' widget
 * outputs are untrusted for them and would fall back to text). Each rendered output opens
 * its own comm to the kernel of the notebook (or console) it is in, found through its
 * parents' `sessionContext`, and joins that graph's canvas session.
 */
import type { ISessionContext } from "@jupyterlab/apputils";
import type { IRenderMime } from "@jupyterlab/rendermime-interfaces";
import { Widget } from "@lumino/widgets";
import { CanvasApp } from "../app";
import type { UserIdentity } from "../presence";
import { CANVAS_TARGET, CommModel } from "./kernel";

export const MIME = "application/vnd.vortex.canvas.v1+json";
/** Before ipywidgets' widget view (rank -10): the canvas renders through us when both exist. */
export const RANK = -20;

interface CanvasData { graph?: string; version?: string }

export class CanvasRenderer extends Widget implements IRenderMime.IRenderer {
  app: CanvasApp | null = null;
  readonly comm: CommModel;
  private data: CanvasData | null = null;
  private readonly message: HTMLDivElement;
  private session: ISessionContext | null = null;
  private opened = false;

  constructor(private user: () => UserIdentity | null) {
    super();
    this.addClass("vx-output");
    this.message = document.createElement("div");
    this.message.className = "vx-document-message";
    this.message.hidden = true;
    this.node.appendChild(this.message);
    this.comm = new CommModel({
      closed: () => {
        if (!this.opened) return;
        this.say("The kernel that showed this graph is gone (it restarted or stopped): run the cell again.");
      },
      intercept: (msg) => {
        if (msg.t === "error" && msg.code === "VE-601") { this.say(String(msg.message)); return true; }
        return false;
      },
    });
    this.comm.set("height", 520);
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = (model.data[MIME] ?? null) as CanvasData | null;
    if (this.data?.graph === data?.graph && this.opened) return;
    this.data = data;
    if (this.isAttached) this.connect();
  }

  protected override onAfterAttach(): void {
    if (!this.opened) this.connect();
  }

  private connect(): void {
    if (!this.data?.graph) { this.say("This output names no graph."); return; }
    this.session ??= findSession(this);
    const kernel = this.session?.session?.kernel;
    if (!kernel) {
      this.say("No kernel is connected: run the cell to show the live canvas.");
      this.session?.kernelChanged.connect(() => { if (!this.opened) this.connect(); });
      return;
    }
    this.comm.open(kernel, CANVAS_TARGET, { graph: this.data.graph });
    this.opened = true;
    this.say("");
    if (this.app) this.app.provider.start();
    else this.app = new CanvasApp(this.comm, this.node, { user: this.user() });
  }

  private say(text: string): void {
    this.message.textContent = text;
    this.message.hidden = !text;
  }

  override dispose(): void {
    if (this.isDisposed) return;
    this.comm.close();
    this.app?.destroy();
    this.app = null;
    super.dispose();
  }
}

/** The session of the notebook or console a widget sits in (walking up its parents). */
function findSession(widget: Widget): ISessionContext | null {
  for (let w: Widget | null = widget; w; w = w.parent) {
    const ctx = (w as unknown as { sessionContext?: ISessionContext }).sessionContext;
    if (ctx && typeof ctx === "object" && "session" in ctx) return ctx;
  }
  return null;
}

export function rendererFactory(user: () => UserIdentity | null): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [MIME],
    defaultRank: RANK,
    createRenderer: () => new CanvasRenderer(user),
  };
}
