/**
 * The searchable palette (used for "add node" and for the command palette): a text box and
 * a list grouped by category; arrows move, Enter picks, Escape closes.
 */
import { grouped, search, type PaletteItem } from "./search";

export class Palette {
  readonly el: HTMLDivElement;
  private input: HTMLInputElement;
  private list: HTMLDivElement;
  private shown: PaletteItem[] = [];
  private active = 0;
  private pick: ((item: PaletteItem) => void) | null = null;
  private items: PaletteItem[] = [];

  constructor(parent: HTMLElement, private onClose: () => void) {
    this.el = document.createElement("div");
    this.el.className = "vx-palette";
    this.el.hidden = true;
    this.el.setAttribute("role", "dialog");
    this.input = document.createElement("input");
    this.input.className = "vx-palette-input";
    this.input.setAttribute("aria-label", "search");
    this.list = document.createElement("div");
    this.list.className = "vx-palette-list";
    this.list.setAttribute("role", "listbox");
    this.el.append(this.input, this.list);
    parent.appendChild(this.el);
    this.input.addEventListener("input", () => this.refresh());
    this.input.addEventListener("keydown", (e) => this.onKey(e));
    this.input.addEventListener("blur", () => setTimeout(() => this.close(), 150));
  }

  get open(): boolean {
    return !this.el.hidden;
  }

  show(title: string, items: PaletteItem[], at: [number, number], pick: (item: PaletteItem) => void): void {
    this.items = items;
    this.pick = pick;
    this.input.placeholder = title;
    this.input.value = "";
    this.el.style.left = `${Math.max(4, at[0])}px`;
    this.el.style.top = `${Math.max(4, at[1])}px`;
    this.el.hidden = false;
    this.refresh();
    this.input.focus();
  }

  close(): void {
    if (this.el.hidden) return;
    this.el.hidden = true;
    this.pick = null;
    this.onClose();
  }

  private refresh(): void {
    this.shown = search(this.items, this.input.value);
    this.active = 0;
    this.list.replaceChildren();
    for (const [group, items] of grouped(this.shown)) {
      const h = document.createElement("div");
      h.className = "vx-palette-group";
      h.textContent = group;
      this.list.appendChild(h);
      for (const it of items) this.list.appendChild(this.row(it));
    }
    // grouping reorders; keep `shown` in display order so arrows follow the screen
    this.shown = [...grouped(this.shown).values()].flat();
    this.highlight();
  }

  private row(it: PaletteItem): HTMLDivElement {
    const r = document.createElement("div");
    r.className = "vx-palette-item";
    r.setAttribute("role", "option");
    r.dataset.id = it.id;
    r.textContent = it.label;
    if (it.detail && it.detail !== it.label) {
      const d = document.createElement("span");
      d.className = "vx-palette-detail";
      d.textContent = it.detail;
      r.appendChild(d);
    }
    r.addEventListener("mousedown", (e) => { e.preventDefault(); this.choose(it); });
    return r;
  }

  private highlight(): void {
    const rows = this.list.querySelectorAll<HTMLElement>(".vx-palette-item");
    rows.forEach((r, i) => r.setAttribute("aria-selected", String(i === this.active)));
    rows[this.active]?.scrollIntoView?.({ block: "nearest" });
  }

  private onKey(e: KeyboardEvent): void {
    e.stopPropagation();
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const n = this.shown.length;
      if (n) this.active = (this.active + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      this.highlight();
    } else if (e.key === "Enter") {
      e.preventDefault();
      const it = this.shown[this.active];
      if (it) this.choose(it);
    } else if (e.key === "Escape") {
      e.preventDefault();
      this.close();
    }
  }

  private choose(it: PaletteItem): void {
    const fn = this.pick;
    this.close();
    fn?.(it);
  }
}
