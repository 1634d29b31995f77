/**
 * The anywidget entry point of the vortex-jupyter canvas (bundled to
 * `vortex_jupyter/static/widget.js`). anywidget calls `render({ model, el })` once per view
 * and the returned function when the view goes away.
 */
import { CanvasApp } from "./app";
import type { WidgetModel } from "./protocol";

export interface RenderProps { model: WidgetModel; el: HTMLElement }

function render({ model, el }: RenderProps): () => void {
  const app = new CanvasApp(model, el);
  return () => app.destroy();
}

export default { render };
