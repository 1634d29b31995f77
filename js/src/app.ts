/**
 * One canvas view: wires the Y doc replica, the comm provider, the scene, the renderer,
 * input handling and the DOM around the canvas. Implements `Host` for the input handlers.
 *
 * Lifecycle: constructed by `render()`, starts syncing at once, fits the view to the graph
 * when the first sync completes, and `destroy()` undoes everything it set up.
 */
import * as Y from "yjs";
import { GraphDoc } from "./docmodel";
import { Editor } from "./edit/editor";
import type { Host } from "./edit/host";
import { lastCopiedText } from "./edit/clipboard";
import { Input } from "./input";
import type { FromKernel, Specs, ToKernel, WidgetModel, WireBuffer } from "./protocol";
import { toBytes } from "./protocol";
import type { NodeView } from "./render/layout";
import { Renderer } from "./render/renderer";
import { boundsOf, fitRect, screenToGraph, visibleRect, type Viewport } from "./render/view";
import { RunState } from "./runstate";
import { Scene } from "./scene";
import { CommProvider } from "./sync";
import { NodeList } from "./ui/a11y";
import { HistoryPanel } from "./ui/history";
import { pendingCount, queueAdvanced } from "./history";
import { OutputImages } from "./ui/outputs";
import { Overlays } from "./ui/overlays";
import { Palette } from "./ui/palette";
import { Toasts } from "./ui/toast";
import { Toolbar } from "./ui/toolbar";
import { commandItems, runCommand } from "./commands";
import { nodeItems, specItems } from "./ui/search";
import { exposeTestHook } from "./testhook";
import { Presence, type UserIdentity } from "./presence";
import type { Awareness } from "y-protocols/awareness";

/** How a view is set up beyond its channel to the kernel (all optional). */
export interface CanvasOptions {
  /**
   * The doc to edit: a collaborative document's (its room keeps it in sync); by default a
   * fresh replica the kernel fills.
   */
  doc?: Y.Doc;
  /** Presence channel of its own (a document's room); by default awareness rides the comm. */
  awareness?: Awareness;
  /** This user's identity for presence (JupyterLab's); `null`: anonymous or the channel's. */
  user?: UserIdentity | null;
  /** The doc is already loaded (a room's): no need to wait for the kernel to draw it. */
  loaded?: boolean;
}

export class CanvasApp implements Host {
  readonly root: HTMLDivElement;
  readonly stage: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  readonly doc: Y.Doc;
  readonly origin = { view: "local" };
  readonly gdoc: GraphDoc;
  readonly scene: Scene;
  readonly run = new RunState();
  readonly r: Renderer;
  readonly editor: Editor;
  readonly provider: CommProvider;
  readonly toasts: Toasts;
  readonly toolbar: Toolbar;
  readonly list: NodeList;
  readonly palette: Palette;
  readonly overlays: Overlays;
  readonly outputs: OutputImages;
  readonly presence: Presence;
  readonly history: HistoryPanel;
  private input: Input;
  private cleanups: Array<() => void> = [];
  private fitted = false;
  /** The viewport the last fit() set (identity compared). */
  private fittedView: Viewport | null = null;

  constructor(readonly model: WidgetModel, el: HTMLElement, readonly options: CanvasOptions = {}) {
    this.doc = options.doc ?? new Y.Doc();
    this.root = div("vx-root");
    this.root.tabIndex = 0;
    this.root.setAttribute("role", "application");
    this.root.setAttribute("aria-label", "graph canvas: Tab and arrows move between nodes, Ctrl+K for commands");
    // JupyterLab (Lumino) must not treat keys typed on the canvas as notebook shortcuts
    // (arrows, Delete, Ctrl+Z...): Lumino skips bindings under this attribute.
    this.root.setAttribute("data-lm-suppress-shortcuts", "true");
    this.stage = div("vx-stage");
    this.canvas = document.createElement("canvas");
    this.canvas.className = "vx-canvas";
    this.canvas.setAttribute("aria-hidden", "true");
    this.gdoc = new GraphDoc(this.doc, this.origin);
    this.scene = new Scene(this.gdoc, (model.get("specs") as Specs) ?? {});
    this.r = new Renderer(this.canvas, this.scene, this.run);
    this.editor = new Editor(this.gdoc, this.scene);
    this.toolbar = new Toolbar(this.root, {
      run: () => this.send({ t: "run", outputs: null }),
      queue: () => this.send({ t: "queue" }),
      cancel: () => this.send({ t: "cancel" }),
      add: () => this.openAddPalette(this.r.width / 2 - 150, 40),
      fit: () => this.fit(), undo: () => this.editor.undo.undo(), redo: () => this.editor.undo.redo(),
      group: () => this.group(), commands: () => this.openCommandPalette(),
      history: () => this.toolbar.setHistoryOpen(this.history.toggle()),
    });
    this.root.append(this.stage);
    this.stage.append(this.canvas);
    this.list = new NodeList(this.stage, this.r);
    this.overlays = new Overlays(this.stage, () => {
      this.presence.publishEditing(null);
      this.root.focus({ preventScroll: true });
    }, this.scene);
    this.palette = new Palette(this.stage, (refocus) => { if (refocus) this.root.focus({ preventScroll: true }); },
      (e) => this.paletteKey(e));
    this.history = new HistoryPanel(this.stage, (msg) => this.send(msg));
    this.history.onHide = () => this.toolbar.setHistoryOpen(false);
    this.toasts = new Toasts(this.stage);
    this.outputs = new OutputImages(this.root, this.run);
    el.appendChild(this.root);
    this.provider = new CommProvider(this.doc, model, {
      onMessage: (m, b) => this.guard(() => this.onKernel(m, b)),
      onError: (err) => this.reportError("bad y message from kernel", err),
      awareness: !options.awareness,
    });
    const awareness = options.awareness ?? (this.provider.awareness as Awareness);
    this.presence = new Presence(awareness, this.r, options.user ?? null);
    this.cleanups.push(this.presence.onUsers((users) => this.toolbar.setUsers(users)));
    this.input = new Input(this, this.root, this.canvas);
    this.wire();
    exposeTestHook(this);
    this.provider.start();
  }

  private wire(): void {
    this.setHeight();
    const onSpecs = (): void => this.scene.setSpecs((this.model.get("specs") as Specs) ?? {});
    const onHeight = (): void => this.setHeight();
    this.model.on("change:specs", onSpecs);
    this.model.on("change:height", onHeight);
    this.cleanups.push(() => { this.model.off("change:specs", onSpecs); this.model.off("change:height", onHeight); });
    this.cleanups.push(this.scene.onChange(() => this.r.invalidate()));
    this.cleanups.push(this.r.onDraw(() => this.afterDraw()));
    const ro = new ResizeObserver(() => this.onResize());
    ro.observe(this.canvas);
    // A canvas hidden by JupyterLab (windowing, content-visibility) gets no resize callback
    // when shown again; coming into view is the signal to draw.
    const io = new IntersectionObserver((es) => { if (es.some((e) => e.isIntersecting)) this.onResize(); });
    io.observe(this.canvas);
    this.cleanups.push(() => { ro.disconnect(); io.disconnect(); });
    const loaded = this.options.loaded ? Promise.resolve() : this.provider.whenSynced();
    loaded.then(() => {
      this.r.emptyHint = true;
      if (!this.fitted) this.fit();
      this.r.invalidate();
    });
  }

  /** `height` px tall; 0 fills the parent (a document panel). */
  private setHeight(): void {
    const raw = this.model.get("height");
    const h = raw === undefined || raw === null ? 520 : Number(raw) || 0;
    this.root.classList.toggle("vx-fill", h <= 0);
    this.stage.style.height = h > 0 ? `${h}px` : "";
    this.r.invalidate();
  }

  private afterDraw(): void {
    this.overlays.reposition(this.r.view);
    this.list.schedule();
  }

  private onKernel(m: FromKernel, buffers: WireBuffer[]): void {
    if (m.t === "event") {
      if (m.event.kind === "run_started") this.outputs.clear();
      if (this.run.apply(m.event)) this.scene.touch();
      // The message names the node; a replayed (old) failure shows on its node, not as a toast.
      if (m.event.kind === "node_failed" && !m.replay) this.toast(`${m.event.code ?? "VE-500"}: ${m.event.message ?? "failed"}`);
      // why nodes run again, e.g. "re-running 5 nodes: cached outputs belong to the workers executor"
      if (m.event.kind === "run_note" && !m.replay && m.event.message) this.toast(m.event.message, "info");
      if (m.event.kind === "run_finished") {
        this.toolbar.setStatus(`run ${m.event.status ?? "done"}`);
        if (!m.replay) this.history.changed();
      }
    } else if (m.t === "image" && buffers.length) {
      this.outputs.receive(m.node, m.final, m.mime, toBytes(buffers[0]))
        .then(() => { this.scene.setPreview(m.node, true); this.scene.touch(); })
        .catch((err) => this.reportError(`image for ${m.node} could not be decoded`, err));
    } else if (m.t === "error") {
      this.toast(`${m.code}: ${m.message}`);
      if (m.problems?.length) {
        this.run.markProblems(m.problems);
        this.scene.touch();
        this.toolbar.setStatus("not run: fix the marked nodes");
      }
    } else if (m.t === "queue_items") {
      const advanced = queueAdvanced(this.history.queue, m.items);
      this.toolbar.setQueued(pendingCount(m.items));
      this.history.receive(m, []);
      if (advanced) this.history.changed(); // a queued run finished (or was dropped)
    } else if (m.t === "runs" || m.t === "run_diff" || m.t === "gallery_items") {
      this.history.receive(m, buffers.map(toBytes));
    } else if (m.t === "restored") {
      this.toast(`Restored the graph of run ${m.run_id} (${m.edits} edit${m.edits === 1 ? "" : "s"})`, "info");
      this.history.receive(m, []);
    } else if (m.t === "state") {
      this.run.running = m.running;
      this.toolbar.setRunning(m.running);
      const shown = this.toolbar.status.textContent ?? "";
      // A run that never started sends no run_finished: do not leave "running…" behind.
      this.toolbar.setStatus(m.running ? "running…" : shown === "running…" ? "" : shown);
    }
  }

  // ---- Host ----------------------------------------------------------------
  send(msg: ToKernel): void {
    this.model.send(msg);
  }

  pointerAt(at: [number, number] | null): void {
    this.presence.publishCursor(at);
  }

  toast(message: string, kind: "error" | "info" = "error"): void {
    this.toasts.show(message, kind);
  }

  setSelection(ids: Iterable<string>): void {
    this.r.selected.clear();
    for (const id of ids) if (this.scene.nodes.has(id)) this.r.selected.add(id);
    this.presence.publishSelection([...this.r.selected]);
    this.scene.touch();
  }

  /** The add-node palette at (sx, sy) (CSS px in the canvas); the node goes to a free spot there. */
  openAddPalette(sx: number, sy: number): void {
    const [gx, gy] = screenToGraph(this.r.view, sx, sy);
    this.palette.show("Add node…", specItems(this.scene.allSpecs()), [sx, sy],
      (it) => this.addNodeAt(it.id, gx, gy), { noun: "node" });
  }

  /** Commands and node types; a node type picked here goes to a free spot at the view centre. */
  openCommandPalette(): void {
    const items = [...commandItems(), ...nodeItems(this.scene.allSpecs())];
    this.palette.show("Command or node…", items, [this.r.width / 2 - 150, 40], (it) => {
      if (it.kind !== "node") { runCommand(this, it.id); return; }
      const [gx, gy] = screenToGraph(this.r.view, this.r.width / 2, this.r.height / 2);
      this.addNodeAt(it.id, gx, gy);
    }, { noun: "command or node" });
  }

  private addNodeAt(type: string, gx: number, gy: number): void {
    this.setSelection([this.editor.addNode(type, gx, gy)]);
  }

  /** Ctrl/Cmd+K (or Ctrl+Shift+P) typed in an open palette opens the command palette in its place. */
  private paletteKey(e: KeyboardEvent): boolean {
    const k = e.key.toLowerCase();
    if (!(k === "k" || (e.shiftKey && k === "p"))) return false;
    this.openCommandPalette();
    return true;
  }

  openWidget(node: NodeView, name: string): void {
    this.overlays.editParam(node, name, this.r.view, (v) => this.gdoc.setParam(node.id, name, v));
    const editing = this.overlays.editing;
    if (editing) this.presence.publishEditing(editing.node, editing.name); // others see who edits it
  }

  editTitle(node: NodeView): void {
    this.overlays.editTitle(node, this.r.view, (t) => this.gdoc.setTitle(node.id, t));
  }

  editGroupTitle(id: string): void {
    this.overlays.editGroupTitle(id, this.r.view, (t) => this.editor.renameGroup(id, t));
  }

  fit(): void {
    const b = boundsOf([...this.scene.nodes.values(), ...this.scene.groups.values()]);
    if (this.r.hidden()) return; // no size to fit into; onResize fits once shown
    this.r.resize();
    if (b) {
      this.fitted = true;
      this.r.setView((this.fittedView = fitRect(b, this.r.width, this.r.height)));
    }
  }

  /**
   * The canvas changed size or came into view. A view the user has not moved since the last
   * fit (same object: every pan/zoom makes a new one) is fitted again, so narrowing the
   * browser window keeps the graph framed instead of cutting it off.
   */
  private onResize(): void {
    if (this.r.hidden()) return;
    if (!this.fitted || this.r.view === this.fittedView) this.fit();
    this.r.invalidate();
  }

  copy(): void {
    const text = this.editor.copy(this.r.selected);
    if (text) navigator.clipboard?.writeText(text).catch(() => undefined);
  }

  paste(): void {
    const place = (text: string | null): void => {
      const vis = visibleRect(this.r.view, this.r.width, this.r.height);
      const ids = this.editor.paste(text, vis.x + vis.w / 4, vis.y + vis.h / 4);
      if (ids.length) this.setSelection(ids);
    };
    const read = navigator.clipboard?.readText?.();
    if (!read) { place(lastCopiedText()); return; }
    read.then((t) => place(t && t.includes("vortex-jupyter/nodes") ? t : lastCopiedText()))
      .catch(() => place(lastCopiedText()));
  }

  group(): void {
    if (!this.editor.groupNodes(this.r.selected)) this.toast("Select nodes to group first", "info");
  }

  /** Deletes the groups (frames) that contain a selected node; the nodes stay. */
  ungroup(): void {
    const ids = [...this.scene.groups.keys()].filter((g) => this.editor.groupMembers(g).some((n) => this.r.selected.has(n)));
    if (!ids.length) { this.toast("No group around the selection", "info"); return; }
    this.gdoc.transact(() => { for (const id of ids) this.gdoc.groups.delete(id); });
  }

  /** Runs a UI callback; an exception becomes a console error forwarded to the kernel. */
  guard(fn: () => void): void {
    try { fn(); } catch (err) { this.reportError("canvas error", err); }
  }

  reportError(what: string, err: unknown): void {
    const message = `${what}: ${err instanceof Error ? err.message : String(err)}`;
    console.error(message, err);
    this.model.send({ t: "log", level: "error", message });
  }

  destroy(): void {
    for (const fn of this.cleanups.splice(0)) fn();
    this.input.destroy();
    this.list.destroy();
    this.r.destroy();
    this.editor.destroy();
    this.provider.destroy();
    this.presence.destroy();
    this.scene.destroy();
    this.overlays.close();
    this.history.destroy();
    if (!this.options.doc) this.doc.destroy(); // a document's doc outlives its views
    this.root.remove();
  }
}

function div(cls: string): HTMLDivElement {
  const d = document.createElement("div");
  d.className = cls;
  return d;
}
