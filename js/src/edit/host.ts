/**
 * What the input handlers need from the widget (implemented by `app.ts`). A seam: the
 * handlers know nothing about anywidget, the comm or the DOM around the canvas.
 */
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
}
