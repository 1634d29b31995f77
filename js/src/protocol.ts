/**
 * Wire protocol between the canvas view (this bundle) and the kernel.
 *
 * Twin of `vortex_jupyter/canvas/protocol.py`; the contract is written down in
 * `docs/canvas-protocol.md`. Change both files together. Messages ride anywidget custom
 * messages: JSON content with a `"t"` type tag, binary payloads in `buffers[0]`.
 */

/** y-websocket framing: first varuint of a `{"t":"y"}` buffer. */
export const Y_MESSAGE_SYNC = 0;
export const Y_MESSAGE_AWARENESS = 1;

/** Largest update the view will send; the kernel enforces its own cap too. */
export const MAX_UPDATE_BYTES = 8 * 1024 * 1024;

// ---- view -> kernel -------------------------------------------------------
export interface HelloMsg { t: "hello" }
export interface YMsg { t: "y" }
export interface RunMsg { t: "run"; outputs: string[] | null }
export interface CancelMsg { t: "cancel" }
export interface LogMsg { t: "log"; level: "error" | "warning" | "info"; message: string }
/** History panel: list runs (newest first); `filter` keys: status, origin, node_type, since. */
export interface HistoryFilter { status?: string | string[]; origin?: string; node_type?: string; since?: number | string }
export interface HistoryMsg { t: "history"; filter?: HistoryFilter; limit?: number }
/** What changed from run `run_id`'s graph to the current one (what a restore takes back). */
export interface DiffMsg { t: "diff"; run_id: string }
/** Put run `run_id`'s graph back (kernel-side model edits: the doc follows for every view). */
export interface RestoreMsg { t: "restore"; run_id: string }
export interface GalleryMsg { t: "gallery"; limit?: number }
/** Queue the graph as it is now. */
export interface QueueMsg { t: "queue"; priority?: number }
export interface QueueListMsg { t: "queue_list" }
export interface QueuePauseMsg { t: "queue_pause" }
export interface QueueResumeMsg { t: "queue_resume" }
export interface QueueCancelMsg { t: "queue_cancel"; item: number }
export type PanelRequest = HistoryMsg | DiffMsg | RestoreMsg | GalleryMsg | QueueMsg | QueueListMsg
  | QueuePauseMsg | QueueResumeMsg | QueueCancelMsg;
export type ToKernel = HelloMsg | YMsg | RunMsg | CancelMsg | LogMsg | PanelRequest;

// ---- kernel -> view -------------------------------------------------------
/** An engine event (`engine/events.py` `to_dict()`), previews without `data`. */
export interface EngineEvent {
  kind: string;
  run_id: string;
  node?: string;
  value?: number;
  total?: number | null;
  text?: string | null;
  code?: string;
  message?: string;
  planned?: string[];
  cached?: string[];
  status?: string;
  /** `run_finished`: ran / cached / failed counts, and `reason` (a `run_note`'s message) when there was one. */
  stats?: Record<string, number | string>;
  /** `run_note`: why the run does what it does (`message`), its cause (`reason`) and what to do (`hint`). */
  reason?: string;
  hint?: string;
  [key: string]: unknown;
}
/** `replay`: an earlier run's event sent to a view that opened later (shown, not toasted). */
export interface EventMsg { t: "event"; event: EngineEvent; replay?: boolean }
export interface ImageMsg { t: "image"; node: string; final: boolean; mime: string }
/** A graph problem (`errors.py` `Problem.to_dict()`). */
export interface Problem { code: string; node: string | null; port: string | null; message: string; hint?: string }
/** `problems`: a refused run's validation problems, marked on their nodes. */
export interface ErrorMsg { t: "error"; code: string; message: string; problems?: Problem[] }
export interface StateMsg { t: "state"; running: boolean }
/** The node specs, for views that have no widget trait for them (comm views). */
export interface SpecsMsg { t: "specs"; specs: Specs }
/** One recorded run (`protocol.run_row`); times in Unix seconds; seeds past 2^53 - 1 as text. */
export interface RunRow {
  id: string;
  started: number;
  finished: number | null;
  status: string;
  origin: string | null;
  who: string | null;
  elapsed: number | null;
  ran: number;
  cached: number;
  failed: number;
  seeds: Record<string, number | string>;
  prompts: Record<string, string>;
}
export interface RunsMsg { t: "runs"; rows: RunRow[] }
/** `lines`: the changes from that run's graph to now, in words; `errors`: its failed nodes. */
export interface RunDiffMsg { t: "run_diff"; run_id: string; lines: string[]; errors: string[] }
export interface RestoredMsg { t: "restored"; run_id: string; edits: number }
/** An output file of a run; `thumb`: index of its PNG thumbnail in the message's buffers. */
export interface GalleryItem {
  run_id: string;
  node: string;
  path: string;
  sha256: string | null;
  started: number | null;
  seeds: Record<string, number | string>;
  prompts: Record<string, string>;
  thumb: number | null;
}
export interface GalleryItemsMsg { t: "gallery_items"; items: GalleryItem[] }
/** A pending queue item (`history/queue.py` `QueueItem`). */
export interface QueueItem {
  id: number;
  status: string;
  priority: number;
  created: number;
  origin: string | null;
  run_id: string | null;
  error: string | null;
}
/** The pending queue, running first; sent to every view whenever it changes. */
export interface QueueItemsMsg { t: "queue_items"; items: QueueItem[]; paused: boolean }
export type PanelReply = RunsMsg | RunDiffMsg | RestoredMsg | GalleryItemsMsg | QueueItemsMsg;
export type FromKernel = YMsg | EventMsg | ImageMsg | ErrorMsg | StateMsg | SpecsMsg | PanelReply;

// ---- kernel -> a workflow document's panel (`js/src/lab/panel.ts`) ----------
/** How the document is shared ("bridge" | "file" | "room") and its file format. */
export interface DocumentMsg { t: "document"; mode: string; format: string }
/** The file as the panel should save it: "text", or "base64" for a PNG. */
export interface FileMsg { t: "file"; content: string; format: "text" | "base64" }
/** Python asked to save the document (`g.save()`). */
export interface SaveMsg { t: "save" }

/** anywidget hands buffers over as DataView (Jupyter) or ArrayBuffer/Uint8Array (others). */
export type WireBuffer = ArrayBuffer | ArrayBufferView;

export function toBytes(buf: WireBuffer): Uint8Array {
  if (buf instanceof Uint8Array) return buf;
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return new Uint8Array(buf);
}

/** The part of anywidget's model this bundle uses (a seam: tests and benchmarks fake it). */
export interface WidgetModel {
  get(name: string): unknown;
  on(event: string, cb: (...args: any[]) => void): void;
  off(event?: string | null, cb?: ((...args: any[]) => void) | null): void;
  send(content: ToKernel, callbacks?: unknown, buffers?: WireBuffer[]): void;
}

// ---- Y doc schema (docs/canvas-protocol.md) --------------------------------
export const ROOT_NODES = "nodes";
export const ROOT_EDGES = "edges";
export const ROOT_GROUPS = "groups";
export const ROOT_META = "meta";

/** Value of `edges[`${dst}:${dst_input}`]`, replaced atomically. */
export interface EdgeValue { src: string; src_output: number; dst: string; dst_input: string }
export interface GroupValue { title: string; x: number; y: number; w: number; h: number; color?: string }

/**
 * A node's ComfyUI mode, the optional node field `mode` (absent: 0). Twin of `NODE_MODES` in
 * `vortex_jupyter/canvas/schema.py`: the kernel rejects anything but an integer 0..4.
 */
export const MODE_ALWAYS = 0;
export const MODE_MUTED = 2;
export const MODE_BYPASSED = 4;
const MODE_NAMES = ["always", "on-event", "muted", "on-trigger", "bypassed"];

/** The mode of a doc value: 0 unless it is an integer 0..4. */
export function readMode(v: unknown): number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v < MODE_NAMES.length ? v : MODE_ALWAYS;
}

/** "always", "muted", "bypassed" (or ComfyUI's rarely used "on-event" / "on-trigger"). */
export function modeName(mode: number): string {
  return MODE_NAMES[readMode(mode)];
}

export function edgeKey(dst: string, dstInput: string): string {
  return `${dst}:${dstInput}`;
}

/** Node ids made in a browser: "n" + 8 random base36 chars (docs/canvas-protocol.md). */
export function newNodeId(rand: () => number = Math.random): string {
  let s = "n";
  for (let i = 0; i < 8; i++) s += Math.floor(rand() * 36).toString(36);
  return s;
}

// ---- node specs (the `specs` traitlet: REGISTRY.to_json()) ------------------
export interface PortSpecJson {
  name: string;
  type: string;
  required?: boolean;
  min?: number;
  max?: number;
  step?: number;
  default?: unknown;
  choices?: unknown[];
  multiline?: boolean;
  forceInput?: boolean;
  control_after_generate?: boolean;
  display?: string;
  tooltip?: string;
  widget?: boolean;
}
export interface OutputSpecJson { name: string; type: string; is_list?: boolean }
export interface NodeSpecJson {
  type: string;
  display_name?: string;
  category?: string;
  description?: string;
  output_node?: boolean;
  inputs: PortSpecJson[];
  outputs: OutputSpecJson[];
}
export type Specs = Record<string, NodeSpecJson>;
