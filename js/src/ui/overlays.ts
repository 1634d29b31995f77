/**
 * DOM overlays placed over one node or group: the param editor (one widget at a time) and
 * the title editors of nodes and groups. They follow their node or group while the view
 * moves (`reposition` after each draw) and close when it is gone.
 *
 * A title editor commits on Enter and on blur, and Escape cancels; closing it (which may
 * blur the input) never commits a second time.
 */
import type { NodeView } from "../render/layout";
import { ROW_H, TITLE_H, widgetRect } from "../render/layout";
import type { Rect } from "../render/spatial";
import { graphToScreen, type Viewport } from "../render/view";
import type { GroupValue, PortSpecJson } from "../protocol";
import { buildEditor, widgetKind } from "./widgets";

/** What an overlay sits on: a node's widget row (`name`) or title bar, or a group's title bar. */
type Target = { node: string; name: string | null } | { group: string };

interface Open { target: Target; el: HTMLElement }

/** The parts of the scene the overlays follow. */
export interface Placed {
  readonly nodes: ReadonlyMap<string, NodeView>;
  readonly groups: ReadonlyMap<string, GroupValue>;
}

export class Overlays {
  private open: Open | null = null;

  constructor(private parent: HTMLElement, private onClose: () => void, private scene: Placed) {}

  get current(): Target | null {
    return this.open ? this.open.target : null;
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
    this.show({ target: { node: n.id, name }, el }, view);
    el.querySelector<HTMLElement>("input[type=text],input[type=number],textarea,select")?.focus();
  }

  editTitle(n: NodeView, view: Viewport, commit: (title: string) => void): void {
    this.editText({ node: n.id, name: null }, n.title, view, commit);
  }

  editGroupTitle(id: string, view: Viewport, commit: (title: string) => void): void {
    const g = this.scene.groups.get(id);
    if (g) this.editText({ group: id }, g.title, view, commit);
  }

  /** A one-line text editor over `target`; commits a non-empty trimmed text. */
  private editText(target: Target, text: string, view: Viewport, commit: (text: string) => void): void {
    this.close();
    const input = document.createElement("input");
    input.className = "vx-title-editor";
    input.value = text;
    const wrap = document.createElement("div");
    const done = (): void => {
      if (this.open?.el !== wrap) return; // already closed (Escape, or Enter then blur)
      const t = input.value.trim();
      this.close();
      if (t && t !== text) commit(t);
    };
    input.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Enter") done();
      else if (e.key === "Escape") this.close();
    });
    input.addEventListener("blur", done);
    wrap.className = "vx-editor vx-editor-title";
    wrap.appendChild(input);
    this.show({ target, el: wrap }, view);
    input.focus();
    input.select();
  }

  private show(o: Open, view: Viewport): void {
    this.open = o;
    this.parent.appendChild(o.el);
    o.el.addEventListener("focusout", (e) => {
      if (!o.el.contains(e.relatedTarget as Node | null)) setTimeout(() => { if (this.open === o) this.close(); }, 0);
    });
    this.reposition(view);
  }

  /** Keeps the open editor over its row or title bar; closes it when that is gone. */
  reposition(view: Viewport): void {
    const o = this.open;
    if (!o) return;
    const r = this.rectOf(o.target);
    if (!r) { this.close(); return; }
    const [x, y] = graphToScreen(view, r.x, r.y);
    Object.assign(o.el.style, {
      left: `${x}px`, top: `${y}px`,
      width: `${Math.max(160, r.w * view.zoom)}px`,
      minHeight: `${Math.max(ROW_H, r.h * view.zoom)}px`,
    });
  }

  private rectOf(t: Target): Rect | null {
    if ("group" in t) {
      const g = this.scene.groups.get(t.group);
      return g ? { x: g.x, y: g.y, w: g.w, h: TITLE_H } : null;
    }
    const n = this.scene.nodes.get(t.node);
    if (!n) return null;
    return t.name ? widgetRect(n, t.name) : { x: n.x, y: n.y, w: n.w, h: TITLE_H };
  }

  /** The node param being edited, if an editor is open on one. */
  get editing(): { node: string; name: string } | null {
    const t = this.open?.target as { node?: string; name?: string | null } | undefined;
    return t && t.node && t.name ? { node: t.node, name: t.name } : null;
  }

  close(): void {
    const o = this.open;
    if (!o) return;
    this.open = null;
    o.el.remove();
    this.onClose();
  }
}
