/**
 * The accessible DOM surface: a visually hidden list of the nodes on screen.
 *
 * Each `li[role=listitem]` carries `data-node-id`, `data-node-type`, `data-state`,
 * `data-mode` ("always", "muted" or "bypassed"), `data-selected` and the node's screen
 * rectangle `data-x/y/w/h` (CSS px relative to the canvas element). Updated after draws, but
 * at most every `delayMs` and only when the view, the scene or the run state changed, so
 * continuous panning never rebuilds it per frame.
 * Capped at `MAX_ITEMS` items (`data-total` on the list has the full count).
 */
import type { Renderer } from "../render/renderer";
import { graphToScreen } from "../render/view";
import { MODE_ALWAYS, modeName } from "../protocol";

export const MAX_ITEMS = 1000;

export class NodeList {
  readonly el: HTMLUListElement;
  private items = new Map<string, HTMLLIElement>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastKey = "";

  constructor(parent: HTMLElement, private r: Renderer, private delayMs = 120) {
    this.el = document.createElement("ul");
    this.el.className = "vx-nodelist vx-visually-hidden";
    this.el.setAttribute("role", "list");
    this.el.setAttribute("aria-label", "nodes on the canvas");
    parent.appendChild(this.el);
  }

  /** Schedules an update (trailing: restarts while changes keep coming). */
  schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => { this.timer = null; this.update(); }, this.delayMs);
  }

  /** Brings the list in line with the last drawn frame now. */
  update(force = false): void {
    const { view } = this.r;
    const visible = this.r.visible.slice(0, MAX_ITEMS);
    // scene.version also bumps on run-state and selection changes (Scene.touch).
    const key = `${view.zoom},${view.panX},${view.panY},${this.r.scene.version},${visible.length}`;
    if (key === this.lastKey && !force) return;
    this.lastKey = key;
    const keep = new Set<string>();
    for (const n of visible) {
      keep.add(n.id);
      let li = this.items.get(n.id);
      if (!li) {
        li = document.createElement("li");
        li.setAttribute("role", "listitem");
        li.dataset.nodeId = n.id;
        this.items.set(n.id, li);
      }
      const [x, y] = graphToScreen(view, n.x, n.y);
      const state = this.r.run.state(n.id);
      const err = this.r.run.errors.get(n.id) ?? this.r.run.notes.get(n.id);
      li.dataset.nodeType = n.type;
      li.dataset.state = state;
      li.dataset.mode = modeName(n.mode);
      li.dataset.selected = String(this.r.selected.has(n.id));
      li.dataset.x = x.toFixed(1);
      li.dataset.y = y.toFixed(1);
      li.dataset.w = (n.w * view.zoom).toFixed(1);
      li.dataset.h = (n.h * view.zoom).toFixed(1);
      const mode = n.mode === MODE_ALWAYS ? "" : `, ${li.dataset.mode}`;
      li.setAttribute("aria-label", `${n.title} (${n.type}, id ${n.id})${mode}, ${state}${err ? `: ${err}` : ""}`);
      li.setAttribute("aria-selected", li.dataset.selected);
      li.textContent = n.title;
    }
    for (const [id, li] of this.items) {
      if (!keep.has(id)) { li.remove(); this.items.delete(id); }
    }
    this.el.replaceChildren(...visible.map((n) => this.items.get(n.id) as HTMLLIElement));
    this.el.dataset.total = String(this.r.visible.length);
  }

  destroy(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
