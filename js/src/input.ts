/**
 * DOM event wiring for the canvas: pointer capture for drags, wheel (non-passive: once the
 * canvas is clicked into, the wheel zooms it instead of scrolling the notebook; before that
 * the notebook scrolls, see `wheelMode`), double-click and keys on the focused root.
 */
import type { Host } from "./edit/host";
import { handleKey } from "./edit/keys";
import { PointerInput } from "./edit/pointer";
import { screenToGraph } from "./render/view";

export class Input {
  private off: Array<() => void> = [];

  constructor(app: Host, root: HTMLElement, canvas: HTMLCanvasElement) {
    const p = new PointerInput(app, canvas);
    const on = <K extends keyof HTMLElementEventMap>(
      target: HTMLElement, type: K, fn: (e: HTMLElementEventMap[K]) => void, opts?: AddEventListenerOptions,
    ): void => {
      const wrapped = (e: HTMLElementEventMap[K]): void => app.guard(() => fn(e));
      target.addEventListener(type, wrapped, opts);
      this.off.push(() => target.removeEventListener(type, wrapped, opts));
    };
    on(canvas, "pointerdown", (e) => {
      root.focus({ preventScroll: true });
      canvas.setPointerCapture?.(e.pointerId);
      p.down(e);
    });
    on(canvas, "pointermove", (e) => {
      p.move(e);
      const box = canvas.getBoundingClientRect();
      app.pointerAt(screenToGraph(app.r.view, e.clientX - box.left, e.clientY - box.top));
    });
    on(canvas, "pointerleave", () => app.pointerAt(null));
    on(canvas, "pointerup", (e) => p.up(e));
    on(canvas, "pointercancel", (e) => p.up(e));
    on(canvas, "dblclick", (e) => p.dblclick(e));
    let hinted = false;
    on(canvas, "wheel", (e) => {
      const engaged = root.contains(document.activeElement);
      if (!p.wheel(e, engaged) && !hinted) {
        hinted = true; // once per view: the page scrolled instead; say how to zoom
        app.toast("Click the canvas to zoom with the wheel (or hold Ctrl)", "info");
      }
    }, { passive: false });
    on(canvas, "contextmenu", (e) => e.preventDefault());
    on(root, "keydown", (e) => {
      if (e.target !== root && e.target !== canvas) return;
      if (handleKey(app, e)) { e.preventDefault(); e.stopPropagation(); }
    });
  }

  destroy(): void {
    for (const fn of this.off.splice(0)) fn();
  }
}
