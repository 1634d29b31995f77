/**
 * A workflow document's shared doc and its JupyterLab document model.
 *
 * `VortexDoc` is the `@jupyter/ydoc` document of a workflow: the Y doc with the graph roots
 * of `docs/canvas-protocol.md` (nodes, edges, groups, meta, file). Under real-time
 * collaboration the collaborative drive makes it (content type `vortex`) and connects it to
 * the file's room on the server, where `vortex_jupyter/lab/ydoc.py` (`YVortex`) loads and
 * saves the file; then the graph is simply that doc.
 *
 * Without collaboration there is no room: the kernel reads the file (it knows ComfyUI's
 * formats) and is the authority the panel syncs with; it sends the file text back after
 * every change (`{"t":"file"}`), which `VortexModel.toString()` returns when JupyterLab saves.
 */
import { YDocument, type DocumentChange } from "@jupyter/ydoc";
import type { DocumentRegistry } from "@jupyterlab/docregistry";
import type { Contents } from "@jupyterlab/services";
import type { PartialJSONValue } from "@lumino/coreutils";
import { Signal, type ISignal } from "@lumino/signaling";
import type { IChangedArgs } from "@jupyterlab/coreutils";

export const CONTENT_TYPE = "vortex";
export const MODEL_NAME = "vortex-model";
export const PNG_MODEL_NAME = "vortex-png-model";

export class VortexDoc extends YDocument<DocumentChange> {
  readonly version = "1.0.0";

  constructor(options?: YDocument.IOptions) {
    super(options);
    for (const root of ["nodes", "edges", "groups", "meta", "file"]) this.ydoc.getMap(root);
  }

  /** A JSON snapshot of the graph (the file text is written by the server or the kernel). */
  getSource(): string {
    const out: Record<string, unknown> = {};
    for (const root of ["nodes", "edges", "groups"]) out[root] = this.ydoc.getMap(root).toJSON();
    return JSON.stringify(out);
  }

  setSource(_value: string): void {
    throw new Error("a workflow's graph is edited on the canvas or in Python, not set as text");
  }
}

/** The document model of a workflow file (`*.vortex.json`, a ComfyUI `.json`, a PNG). */
export class VortexModel implements DocumentRegistry.IModel {
  readonly sharedModel: VortexDoc;
  /** The graph lives in the file's room (real-time collaboration), not in a kernel. */
  readonly rtc: boolean;
  readonly collaborative: boolean;
  readonly defaultKernelName = "python3";
  readonly defaultKernelLanguage = "python";
  private _text = "";
  private _saved = "";
  private _dirty = false;
  private _readOnly = false;
  private _disposed = false;
  private _contentChanged = new Signal<this, void>(this);
  private _stateChanged = new Signal<this, IChangedArgs<unknown>>(this);

  constructor(readonly format: Contents.FileFormat, options: DocumentRegistry.IModelOptions<VortexDoc> = {}) {
    this.collaborative = format === "text";
    this.rtc = !!(options.collaborationEnabled && options.sharedModel);
    this.sharedModel = options.sharedModel ?? new VortexDoc();
  }

  get contentChanged(): ISignal<this, void> { return this._contentChanged; }
  get stateChanged(): ISignal<this, IChangedArgs<unknown>> { return this._stateChanged; }
  get isDisposed(): boolean { return this._disposed; }

  get dirty(): boolean { return this._dirty; }
  set dirty(value: boolean) {
    if (value === this._dirty) return;
    const old = this._dirty;
    this._dirty = value;
    if (!value) this._saved = this._text;
    this._stateChanged.emit({ name: "dirty", oldValue: old, newValue: value });
  }

  get readOnly(): boolean { return this._readOnly; }
  set readOnly(value: boolean) {
    if (value === this._readOnly) return;
    const old = this._readOnly;
    this._readOnly = value;
    this._stateChanged.emit({ name: "readOnly", oldValue: old, newValue: value });
  }

  /** The file as it is now: what the kernel last wrote (the file as loaded until then). */
  toString(): string { return this._text; }

  /** JupyterLab read the file (no collaboration): the kernel will parse it. */
  fromString(value: string): void {
    this._text = this._saved = value;
    this._contentChanged.emit();
  }

  toJSON(): PartialJSONValue { return this._text; }
  fromJSON(value: unknown): void { this.fromString(String(value ?? "")); }

  /** The kernel wrote the file after an edit: save this text; dirty while it is unsaved. */
  setText(value: string): void {
    if (value === this._text) return;
    this._text = value;
    this.dirty = value !== this._saved;
    this._contentChanged.emit();
  }

  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    Signal.clearData(this);
  }
}

export class VortexModelFactory implements DocumentRegistry.IModelFactory<VortexModel, VortexDoc> {
  readonly collaborative: boolean;
  private _disposed = false;

  /** `format` "text": JSON workflows (shared under collaboration); "base64": PNGs (never). */
  constructor(readonly name: string, readonly contentType: Contents.ContentType, readonly fileFormat: Contents.FileFormat) {
    this.collaborative = fileFormat === "text";
  }

  get isDisposed(): boolean { return this._disposed; }
  dispose(): void { this._disposed = true; }
  preferredLanguage(_path: string): string { return "python"; }

  createNew(options: DocumentRegistry.IModelOptions<VortexDoc> = {}): VortexModel {
    return new VortexModel(this.fileFormat, options);
  }
}
