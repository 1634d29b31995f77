/**
 * Toasts: short messages over the canvas (`role="alert"`, class `vx-toast`), e.g. a refused
 * connection or an update the kernel rejected. They are user feedback, not console errors,
 * so they are not forwarded to the kernel log.
 */
export class Toasts {
  readonly el: HTMLDivElement;

  constructor(parent: HTMLElement) {
    this.el = document.createElement("div");
    this.el.className = "vx-toasts";
    parent.appendChild(this.el);
  }

  show(message: string, kind: "error" | "info" = "error", ms = 6000): HTMLDivElement {
    const t = document.createElement("div");
    t.className = `vx-toast vx-toast-${kind}`;
    t.setAttribute("role", kind === "error" ? "alert" : "status");
    t.textContent = message;
    this.el.appendChild(t);
    while (this.el.children.length > 4) this.el.firstElementChild?.remove();
    setTimeout(() => t.remove(), ms);
    return t;
  }
}
