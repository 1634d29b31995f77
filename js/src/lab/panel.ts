/**
 * The main-area panel of a workflow document: the canvas (palette, Run/Cancel, previews,
 * outputs strip) over the document's graph, with a kernel attached like a notebook's (the
 * kernel picker in the panel toolbar starts or switches it; runs happen there).
 *
 * Under real-time collaboration the canvas edits the document's shared doc directly (its
 * room syncs it with everyone and the server saves it) and the kernel gets the graph over
 * the panel's comm: the panel bridges room and kernel, so Python sees every edit and every
 * user sees Python's. Without collaboration the panel hands the file it read to the kernel,
 * syncs a replica with the kernel's graph, and saves the file text the kernel sends back.
 *
 * A kernel that restarts or is switched is reconnected; the canvas keeps working on the
 * room's doc meanwhile (collaboration) or shows why it waits.
 */
import { Toolbar, type ISessionContext } from "@jupyterlab/apputils";
import { ABCWidgetFactory, DocumentWidget, type DocumentRegistry } from "@jupyterlab/docregistry";
import type { Kernel } from "@jupyterlab/services";
import { Widget } from "@lumino/widgets";
import { CanvasApp } from "../app";
import type { UserIdentity } from "../presence";
import { bootstrap, CommModel, DOCUMENT_TARGET } from "./kernel";
import type { VortexModel } from "./model";

export interface PanelServices {
  /** The signed-in user (JupyterLab's identity from the server), once known. */
  user(): UserIdentity | null;
  dialogs?: ISessionContext.IDialogs;
}

/** The panel's content: the canvas, and a line saying what it waits for when it waits. */
export class CanvasPane extends Widget {
  app: CanvasApp | null = null;
  readonly comm: CommModel;
  /** "bridge" | "file" once the kernel answered; "" before. */
  mode = "";
  private readonly message: HTMLDivElement;
  private kernelId = "";
  private connecting = false;

  constructor(private context: DocumentRegistry.IContext<VortexModel>, private services: PanelServices) {
    super();
    this.addClass("vx-document");
    this.node.tabIndex = -1;
    this.message = document.createElement("div");
    this.message.className = "vx-document-message";
    this.node.appendChild(this.message);
    this.comm = new CommModel({
      intercept: (msg) => this.onKernel(msg),
      closed: () => this.onClosed(),
    });
    this.say("Opening the workflow…");
    void context.ready.then(() => this.start(), (err) => this.say(`Cannot open ${context.localPath}: ${err}`));
  }

  get model(): VortexModel {
    return this.context.model;
  }

  private start(): void {
    if (this.isDisposed) return;
    if (this.model.rtc) this.createApp(); // the room's doc is here already: show it now
    const session = this.context.sessionContext;
    session.kernelChanged.connect(() => void this.connect());
    session.statusChanged.connect((_, status) => { if (status === "idle" && !this.comm.connected) void this.connect(); });
    this.context.pathChanged.connect(() => void this.connect(true));
    void session.ready.then(() => this.connect());
  }

  /** (Re)connect the canvas to the document's kernel. */
  private async connect(force = false): Promise<void> {
    const kernel = this.context.sessionContext.session?.kernel;
    if (!kernel) {
      this.say(this.model.rtc ? "No kernel: pick one (top right) to run the graph; edits are shared meanwhile."
        : "No kernel: pick one (top right) to open the graph.");
      return;
    }
    if (this.connecting || (!force && this.comm.connected && kernel.id === this.kernelId)) return;
    this.connecting = true;
    try {
      await kernel.info;
      await bootstrap(kernel);
      this.kernelId = kernel.id;
      this.open(kernel);
    } catch (err) {
      this.say(err instanceof Error ? err.message : String(err));
    } finally {
      this.connecting = false;
    }
  }

  private open(kernel: Kernel.IKernelConnection): void {
    const model = this.model;
    const data: Record<string, string | boolean> = { path: this.context.localPath, rtc: model.rtc };
    if (!model.rtc) {
      data.content = model.toString();
      data.format = model.format === "base64" ? "base64" : "text";
      this.destroyApp(); // the kernel rebuilds its graph from the file: start a fresh replica
    }
    this.mode = "";
    this.comm.open(kernel, DOCUMENT_TARGET, data);
    if (this.app) this.app.provider.start(); // hello + sync: the kernel gets the room's graph
    else if (!model.rtc) this.createApp();
    this.say("");
  }

  private createApp(): void {
    const model = this.model;
    const rtc = model.rtc;
    this.app = new CanvasApp(this.comm, this.node, rtc
      ? { doc: model.sharedModel.ydoc, awareness: model.sharedModel.awareness, loaded: true, user: null }
      : { user: this.services.user() });
    this.app.root.dataset.document = this.context.localPath;
  }

  private destroyApp(): void {
    this.app?.destroy();
    this.app = null;
  }

  /** Document messages from the kernel; the rest goes to the canvas. */
  private onKernel(msg: Record<string, unknown>): boolean {
    if (msg.t === "document") {
      this.mode = String(msg.mode ?? "");
      this.node.dataset.mode = this.mode;
      return true;
    }
    if (msg.t === "file") {
      this.model.setText(String(msg.content ?? ""));
      return true;
    }
    if (msg.t === "save") {
      void this.context.save();
      return true;
    }
    if (msg.t === "error" && !this.comm.connected) {
      this.say(String(msg.message ?? "the kernel refused to open the workflow"));
      return true;
    }
    return false;
  }

  private onClosed(): void {
    if (this.isDisposed) return;
    this.say(this.model.rtc ? "The kernel went away; edits are still shared. Reconnecting when it is back…"
      : "The kernel went away. Reconnecting when it is back…");
  }

  private say(text: string): void {
    this.message.textContent = text;
    this.message.hidden = !text;
  }

  override dispose(): void {
    if (this.isDisposed) return;
    this.comm.close();
    this.destroyApp();
    super.dispose();
  }
}

export class VortexPanel extends DocumentWidget<CanvasPane, VortexModel> {}

export class VortexWidgetFactory extends ABCWidgetFactory<VortexPanel, VortexModel> {
  constructor(options: DocumentRegistry.IWidgetFactoryOptions<VortexPanel>, private services: PanelServices) {
    super(options);
  }

  protected createNewWidget(context: DocumentRegistry.IContext<VortexModel>): VortexPanel {
    const content = new CanvasPane(context, this.services);
    const panel = new VortexPanel({ content, context });
    panel.toolbar.addItem("kernelName", Toolbar.createKernelNameItem(context.sessionContext, this.services.dialogs));
    return panel;
  }
}
