/**
 * DOM overlays placed over one node: the param editor (one widget at a time) and the title
 * editor. They follow the node while the view moves (`reposition` after each draw).
 */
import type { NodeView } from "../render/layout";
import { ROW_H, TITLE_H, widgetRect } from "../render/layout";
import { graphToScreen, type Viewport } from "../render/view";
import type { PortSpecJson } from "../protocol";
import { buildEditor, widgetKind } from "./widgets";

interface Open { node: string; name: string | null; el: HTMLElement }

export class Overlays {
  private open: Open | null = null;

  constructor(private parent: HTMLElement, private onClose: () => void) {}

  get current(): { node: string; name: string | null } | null {
    return this.open ? { node: this.open.node, name: this.open.name } : null;
  }

  /** Opens the editor of param `name`; BOOLEAN toggles flip at once without an editor. */
  editParam(n: NodeView, name: string, view: Viewport, commit: (v: unknown) => void): void {
    this.close();
    const spec: PortSpecJson = n.inputs.find((p) => p.name === name)?.spec ?? { name, type: "*" };
    if (widgetKind(spec) === "toggle") {
      commit(!n.params[name]);
      return;
    }
    const el = buildEditor(spec, n.params[name], commit, () => this.close());
    this.show({ node: n.id, name, el }, n, view);
    el.querySelector<HTMLElement>("input[type=text],input[type=number],textarea,select")?.focus();
  }

  editTitle(n: NodeView, view: Viewport, commit: (title: string) => void): void {
    this.close();
    const input = document.createElement("input");
    input.className = "vx-title-editor";
    input.value = n.title;
    const done = (): void => { const t = input.value.trim(); if (t) commit(t); this.close(); };
    input.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Enter") done();
      else if (e.key === "Escape") this.close();
    });
    input.addEventListener("blur", done);
    const wrap = document.createElement("div");
    wrap.className = "vx-editor vx-editor-title";
    wrap.appendChild(input);
    this.show({ node: n.id, name: null, el: wrap }, n, view);
    input.focus();
    input.select();
  }

  private show(o: Open, n: NodeView, view: Viewport): void {
    this.open = o;
    this.parent.appendChild(o.el);
    o.el.addEventListener("focusout", (e) => {
      if (!o.el.contains(e.relatedTarget as Node | null)) setTimeout(() => { if (this.open === o) this.close(); }, 0);
    });
    this.reposition(n, view);
  }

  /** Keeps the open editor over its row; closes it when the node is gone. */
  reposition(n: NodeView | undefined, view: Viewport): void {
    const o = this.open;
    if (!o) return;
    if (!n) { this.close(); return; }
    const r = o.name ? widgetRect(n, o.name) : { x: n.x, y: n.y, w: n.w, h: TITLE_H };
    if (!r) { this.close(); return; }
    const [x, y] = graphToScreen(view, r.x, r.y);
    Object.assign(o.el.style, {
      left: `${x}px`, top: `${y}px`,
      width: `${Math.max(160, r.w * view.zoom)}px`,
      minHeight: `${Math.max(ROW_H, r.h * view.zoom)}px`,
    });
  }

  close(): void {
    const o = this.open;
    if (!o) return;
    this.open = null;
    o.el.remove();
    this.onClose();
  }
}
