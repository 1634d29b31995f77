/**
 * What the input handlers and the palette's commands need from the view (implemented by
 * `app.ts`). A seam: they know nothing about anywidget, the comm or the DOM around the
 * canvas, and never import the view itself (no import cycle with `app.ts`).
 */
import type { ToKernel } from "../protocol";
import type { Scene } from "../scene";
import type { Renderer } from "../render/renderer";
import type { NodeView } from "../render/layout";
import type { Editor } from "./editor";

export interface Host {
  readonly r: Renderer;
  readonly scene: Scene;
  readonly editor: Editor;
  toast(message: string, kind?: "error" | "info"): void;
  setSelection(ids: Iterable<string>): void;
  openAddPalette(sx: number, sy: number): void;
  openCommandPalette(): void;
  openWidget(node: NodeView, name: string): void;
  editTitle(node: NodeView): void;
  /** Opens the inline title editor over a group's title bar. */
  editGroupTitle(id: string): void;
  fit(): void;
  copy(): void;
  paste(): void;
  group(): void;
  /** Deletes the groups (frames) around the selection. */
  ungroup(): void;
  /** Sends a message to the kernel (run, cancel). */
  send(msg: ToKernel): void;
  /** Runs a UI callback; an exception is reported, never thrown into the page. */
  guard(fn: () => void): void;
  /** The pointer is at graph coordinates, or left the canvas (`null`): for presence. */
  pointerAt(at: [number, number] | null): void;
}
