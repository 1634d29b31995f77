/**
 * The searchable palette (used for "add node" and for the command palette): a text box and
 * a list grouped by category; arrows move, Enter picks, Escape closes. A query that matches
 * nothing shows a hint row ("No node matches …") instead of an empty box.
 *
 * One palette element serves both uses: `show` while it is open replaces what it shows (the
 * new palette wins), and the box is kept inside the canvas stage (`placeBox`).
 *
 * Closing: Escape and a pick close at once and give focus back to the canvas; losing focus
 * (a click elsewhere) closes it a moment later (a press on the list's scrollbar blurs the box
 * too) without taking focus back. That deferred close belongs to the palette that was open:
 * a `show` in between (the toolbar's "+ Node", a double-click, Ctrl+K, all of which blur the
 * box first) cancels it, so the palette just opened stays open.
 */
import { grouped, search, type PaletteItem } from "./search";

/** How long a blurred palette waits before closing (ms). */
export const BLUR_CLOSE_MS = 150;
const MARGIN = 4;

export interface ShowOptions {
  /** What the list holds, for the no-match hint: "No <noun> matches …". */
  noun?: string;
}

/**
 * Top-left of a `w` x `h` box asked for at `at`, moved (and shrunk, when larger) so that it
 * lies inside a `bw` x `bh` stage with `margin` to spare on every side.
 */
export function placeBox(
  at: [number, number], w: number, h: number, bw: number, bh: number, margin = MARGIN,
): { x: number; y: number; w: number; h: number } {
  const fw = Math.max(0, Math.min(w, bw - 2 * margin)), fh = Math.max(0, Math.min(h, bh - 2 * margin));
  const clamp = (v: number, size: number, bound: number): number =>
    Math.max(margin, Math.min(v, bound - margin - size));
  return { x: clamp(at[0], fw, bw), y: clamp(at[1], fh, bh), w: fw, h: fh };
}

export class Palette {
  readonly el: HTMLDivElement;
  private input: HTMLInputElement;
  private list: HTMLDivElement;
  private shown: PaletteItem[] = [];
  private active = 0;
  private pick: ((item: PaletteItem) => void) | null = null;
  private items: PaletteItem[] = [];
  private noun = "item";
  private closeTimer: ReturnType<typeof setTimeout> | null = null;

  /**
   * `onClose(refocus)`: the palette closed; `refocus` when focus should go back to the canvas
   * (Escape, a pick), not when the user moved it elsewhere. `onKey`: keys the palette does not
   * use itself (e.g. Ctrl+K), offered to the canvas; true when taken.
   */
  constructor(
    private parent: HTMLElement,
    private onClose: (refocus: boolean) => void,
    private onKey: (e: KeyboardEvent) => boolean = () => false,
  ) {
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
    this.input.addEventListener("keydown", (e) => this.key(e));
    this.input.addEventListener("blur", (e) => this.blurred(e));
  }

  get open(): boolean {
    return !this.el.hidden;
  }

  /** The current query's text. */
  get query(): string {
    return this.input.value;
  }

  show(
    title: string, items: PaletteItem[], at: [number, number], pick: (item: PaletteItem) => void,
    opts: ShowOptions = {},
  ): void {
    this.cancelClose();
    this.items = items;
    this.pick = pick;
    this.noun = opts.noun ?? "item";
    this.input.placeholder = title;
    this.input.value = "";
    this.el.hidden = false;
    this.refresh();
    this.place(at);
    this.input.focus();
  }

  /** Keeps the box inside the stage; sized for the full list, so typing only shrinks it. */
  private place(at: [number, number]): void {
    const style = this.el.style;
    style.maxHeight = style.width = "";
    const bw = this.parent.clientWidth, bh = this.parent.clientHeight;
    if (!bw || !bh) { // not laid out (hidden): as asked
      style.left = `${Math.max(MARGIN, at[0])}px`;
      style.top = `${Math.max(MARGIN, at[1])}px`;
      return;
    }
    const box = placeBox(at, this.el.offsetWidth, this.el.offsetHeight, bw, bh);
    if (box.w < this.el.offsetWidth) style.width = `${box.w}px`;
    if (box.h < this.el.offsetHeight) style.maxHeight = `${box.h}px`;
    style.left = `${box.x}px`;
    style.top = `${box.y}px`;
  }

  close(refocus = true): void {
    this.cancelClose();
    if (this.el.hidden) return;
    this.el.hidden = true;
    this.pick = null;
    this.onClose(refocus);
  }

  private blurred(e: FocusEvent): void {
    if (this.el.hidden || this.el.contains(e.relatedTarget as Node | null)) return;
    this.cancelClose();
    this.closeTimer = setTimeout(() => {
      this.closeTimer = null;
      if (!this.el.contains(document.activeElement)) this.close(false);
    }, BLUR_CLOSE_MS);
  }

  private cancelClose(): void {
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
  }

  private refresh(): void {
    this.shown = search(this.items, this.input.value);
    this.active = 0;
    this.list.replaceChildren();
    if (!this.shown.length) this.list.appendChild(this.emptyRow());
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

  private emptyRow(): HTMLDivElement {
    const r = document.createElement("div");
    r.className = "vx-palette-empty";
    r.setAttribute("role", "status");
    const q = this.input.value.trim();
    r.textContent = q ? `No ${this.noun} matches “${q}”` : `No ${this.noun} to show`;
    return r;
  }

  private row(it: PaletteItem): HTMLDivElement {
    const r = document.createElement("div");
    r.className = "vx-palette-item";
    r.setAttribute("role", "option");
    r.dataset.id = it.id;
    if (it.kind) r.dataset.kind = it.kind;
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

  private key(e: KeyboardEvent): void {
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
    } else if ((e.ctrlKey || e.metaKey) && this.onKey(e)) {
      e.preventDefault(); // e.g. Ctrl+K: the command palette replaces this one
    }
  }

  private choose(it: PaletteItem): void {
    const fn = this.pick;
    this.close();
    fn?.(it);
  }
}
