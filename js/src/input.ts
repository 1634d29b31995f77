/**
 * DOM event wiring for the canvas: pointer capture for drags, wheel (non-passive so the
 * notebook does not scroll under the canvas), double-click and keys on the focused root.
 */
import type { CanvasApp } from "./app";
import { handleKey } from "./edit/keys";
import { PointerInput } from "./edit/pointer";

export class Input {
  private off: Array<() => void> = [];

  constructor(app: CanvasApp, root: HTMLElement, canvas: HTMLCanvasElement) {
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
    on(canvas, "pointermove", (e) => p.move(e));
    on(canvas, "pointerup", (e) => p.up(e));
    on(canvas, "pointercancel", (e) => p.up(e));
    on(canvas, "dblclick", (e) => p.dblclick(e));
    on(canvas, "wheel", (e) => p.wheel(e), { passive: false });
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
