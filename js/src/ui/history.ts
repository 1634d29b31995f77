/**
 * The history panel over the canvas (toolbar "History"): the pending queue with Pause/Resume
 * and a cancel button per item, then two tabs. **Runs** lists the recorded runs (status,
 * origin, when, counts, duration, prompt and seed); clicking one asks the kernel for its diff
 * against the current graph and offers Restore. **Gallery** shows output thumbnails with
 * their prompt and seed; clicking one restores the graph that made it.
 *
 * State: what the kernel last sent (`runs`, `gallery_items`, `queue_items`, `run_diff`), kept
 * here; every action is a request (`PanelRequest`) and the panel redraws when the answer
 * comes. While a listed run is still "running" (a run finishing, a queued one, another
 * kernel's) the list is asked for again every `POLL_MS`, so it settles without a click.
 */
import {
  diffHeading, formatElapsed, formatWhen, galleryCaption, pendingCount, queueItemText, runCounts, runDetail,
} from "../history";
import type { GalleryItem, PanelReply, PanelRequest, QueueItem, RunDiffMsg, RunRow } from "../protocol";

export type HistoryTab = "runs" | "gallery";
export const POLL_MS = 1500;

export class HistoryPanel {
  readonly el: HTMLDivElement;
  tab: HistoryTab = "runs";
  rows: RunRow[] = [];
  selected: string | null = null;
  queue: QueueItem[] = [];
  paused = false;
  private tabs = new Map<HistoryTab, HTMLButtonElement>();
  private queueEl: HTMLDivElement;
  private body: HTMLDivElement;
  private detail: HTMLDivElement | null = null;
  private urls: string[] = [];
  private poll: ReturnType<typeof setTimeout> | null = null;

  constructor(parent: HTMLElement, private request: (msg: PanelRequest) => void, private now = () => Date.now() / 1000) {
    this.el = el("div", "vx-history");
    this.el.hidden = true;
    this.el.setAttribute("role", "complementary");
    this.el.setAttribute("aria-label", "run history, gallery and queue");
    const head = el("div", "vx-history-head");
    for (const [tab, label] of [["runs", "Runs"], ["gallery", "Gallery"]] as const) {
      const b = button(`vx-history-tab vx-history-tab-${tab}`, label, () => this.setTab(tab));
      b.setAttribute("role", "tab");
      this.tabs.set(tab, b);
      head.appendChild(b);
    }
    head.appendChild(button("vx-history-refresh", "↻", () => this.refresh(), "Refresh"));
    head.appendChild(button("vx-history-close", "×", () => this.hide(), "Close"));
    this.queueEl = el("div", "vx-queue");
    this.body = el("div", "vx-history-body");
    this.el.append(head, this.queueEl, this.body);
    parent.appendChild(this.el);
    this.setTab("runs", false);
    this.renderQueue();
  }

  get open(): boolean {
    return !this.el.hidden;
  }

  /** Opens or closes the panel; returns whether it is open now. */
  toggle(): boolean {
    if (this.open) this.hide();
    else this.show();
    return this.open;
  }

  show(): void {
    this.el.hidden = false;
    this.refresh();
  }

  hide(): void {
    this.el.hidden = true;
    this.stopPolling();
    this.onHide?.();
  }

  /** Called when the panel closes itself (its × button): the toolbar's toggle follows. */
  onHide: (() => void) | null = null;

  /** Asks the kernel for the open tab's contents and the queue. */
  refresh(): void {
    this.request(this.tab === "runs" ? { t: "history" } : { t: "gallery" });
    this.request({ t: "queue_list" });
  }

  /** Runs or outputs changed (a run finished, the queue moved on): reload the open tab. */
  changed(): void {
    if (this.open) this.request(this.tab === "runs" ? { t: "history" } : { t: "gallery" });
  }

  setTab(tab: HistoryTab, load = true): void {
    this.tab = tab;
    for (const [name, b] of this.tabs) {
      b.setAttribute("aria-selected", String(name === tab));
      b.className = `vx-history-tab vx-history-tab-${name}${name === tab ? " vx-active" : ""}`;
    }
    this.body.replaceChildren(el("div", "vx-history-empty", "Loading…"));
    if (load && this.open) this.request(tab === "runs" ? { t: "history" } : { t: "gallery" });
  }

  /** A kernel reply for the panel (`buffers`: a gallery's thumbnails). */
  receive(m: PanelReply, buffers: Uint8Array[]): void {
    if (m.t === "runs") this.setRows(m.rows);
    else if (m.t === "run_diff") this.showDiff(m);
    else if (m.t === "gallery_items") this.setGallery(m.items, buffers);
    else if (m.t === "queue_items") this.setQueue(m.items, m.paused);
    else if (m.t === "restored" && this.selected === m.run_id && this.open) this.request({ t: "diff", run_id: m.run_id });
  }

  setRows(rows: RunRow[]): void {
    this.rows = rows;
    if (this.tab !== "runs") return;
    const now = this.now();
    const list = rows.map((r) => this.runItem(r, now));
    this.body.replaceChildren(...(list.length ? list : [el("div", "vx-history-empty", "No runs recorded yet: press Run.")]));
    // the selected run keeps its diff across a refresh (a poll must not blank it)
    const entry = list.find((e) => e.dataset.run === this.selected);
    if (entry && this.detail) {
      entry.appendChild(this.detail);
      this.mark(entry);
    } else {
      this.detail = null;
    }
    this.stopPolling();
    if (this.open && rows.some((r) => r.status === "running")) {
      this.poll = setTimeout(() => { this.poll = null; if (this.open && this.tab === "runs") this.request({ t: "history" }); }, POLL_MS);
    }
  }

  /** One run: a button (status, origin, when; counts and duration; prompt and seed), and
   * under it, once selected, its diff. */
  private runItem(r: RunRow, now: number): HTMLElement {
    const entry = el("div", `vx-run-entry vx-run-${r.status}`);
    entry.dataset.run = r.id;
    const item = button("vx-run", "", () => this.select(r.id));
    item.dataset.run = r.id;
    const top = el("span", "vx-run-top");
    top.append(el("span", `vx-run-status vx-status-${r.status}`, r.status), el("span", "vx-run-origin", r.origin ?? ""),
      el("span", "vx-run-when", formatWhen(r.started, now)));
    item.append(top, el("span", "vx-run-counts", `${runCounts(r)} · ${formatElapsed(r.elapsed)}`));
    const detail = runDetail(r);
    if (detail) item.appendChild(el("span", "vx-run-detail", detail));
    item.title = `run ${r.id}${r.who ? ` by ${r.who}` : ""}: click for what changed since, and Restore`;
    entry.appendChild(item);
    return entry;
  }

  /** Selects a run: its diff is asked for and shown under it. */
  select(runId: string): void {
    this.selected = runId;
    const entry = this.entries().find((e) => e.dataset.run === runId);
    this.detail?.remove();
    this.detail = el("div", "vx-run-diff", "Comparing with the current graph…");
    this.detail.dataset.run = runId;
    (entry ?? this.body).appendChild(this.detail);
    this.mark(entry);
    this.request({ t: "diff", run_id: runId });
  }

  private entries(): HTMLElement[] {
    return Array.from(this.body.querySelectorAll<HTMLElement>(".vx-run-entry"));
  }

  /** Shows which run is selected (`aria-pressed` on its button). */
  private mark(selected: HTMLElement | undefined): void {
    for (const e of this.entries()) {
      e.querySelectorAll<HTMLElement>(".vx-run")[0]?.setAttribute("aria-pressed", String(e === selected));
    }
  }

  private showDiff(m: RunDiffMsg): void {
    const box = this.detail;
    if (!box || box.dataset.run !== m.run_id) return; // another run was picked meanwhile
    const parts: HTMLElement[] = [el("div", "vx-diff-heading", diffHeading(m.lines))];
    if (m.lines.length) {
      const list = el("ul", "vx-diff-lines");
      list.append(...m.lines.slice(0, 200).map((line) => el("li", "vx-diff-line", line)));
      if (m.lines.length > 200) list.appendChild(el("li", "vx-diff-line", `… and ${m.lines.length - 200} more`));
      parts.push(list);
    }
    if (m.errors.length) {
      const errs = el("ul", "vx-diff-errors");
      errs.append(...m.errors.map((e) => el("li", "vx-diff-error", e)));
      parts.push(el("div", "vx-diff-heading", "This run's failures:"), errs);
    }
    parts.push(button("vx-btn vx-restore", "Restore", () => this.request({ t: "restore", run_id: m.run_id }),
      "Put this run's graph back on the canvas (for everyone on it)"));
    box.replaceChildren(...parts);
  }

  setGallery(items: GalleryItem[], buffers: Uint8Array[]): void {
    if (this.tab !== "gallery") return;
    this.revoke();
    const cells = items.map((item) => {
      const cell = button("vx-thumb", "", () => this.request({ t: "restore", run_id: item.run_id }),
        "Restore the graph that made this image");
      cell.dataset.run = item.run_id;
      const bytes = item.thumb === null ? undefined : buffers[item.thumb];
      if (bytes) {
        const img = el("img", "vx-thumb-img");
        const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: "image/png" }));
        this.urls.push(url);
        img.src = url;
        img.alt = `output of ${item.node}, run ${item.run_id}`;
        cell.appendChild(img);
      } else {
        cell.appendChild(el("div", "vx-thumb-none", "no preview"));
      }
      cell.appendChild(el("div", "vx-thumb-caption", galleryCaption(item)));
      return cell;
    });
    const grid = el("div", "vx-gallery");
    grid.append(...cells);
    this.body.replaceChildren(cells.length ? grid : el("div", "vx-history-empty", "No output images recorded yet."));
  }

  setQueue(items: QueueItem[], paused: boolean): void {
    this.queue = items;
    this.paused = paused;
    this.renderQueue();
  }

  private renderQueue(): void {
    const n = pendingCount(this.queue);
    const head = el("div", "vx-queue-head");
    head.append(el("span", "vx-queue-count", `Queue: ${n ? `${n} pending` : "empty"}${this.paused ? " · paused" : ""}`),
      this.paused
        ? button("vx-btn vx-queue-resume", "Resume", () => this.request({ t: "queue_resume" }), "Start the queued runs again")
        : button("vx-btn vx-queue-pause", "Pause", () => this.request({ t: "queue_pause" }),
          "Start no further queued run (the running one finishes)"));
    const list = this.queue.map((item) => {
      const row = el("div", `vx-queue-item vx-queue-${item.status}`);
      row.dataset.item = String(item.id);
      row.append(el("span", "", queueItemText(item)),
        button("vx-queue-cancel", "×", () => this.request({ t: "queue_cancel", item: item.id }),
          item.status === "running" ? "Cancel this run" : "Remove from the queue"));
      return row;
    });
    this.queueEl.replaceChildren(head, ...list);
  }

  private stopPolling(): void {
    if (this.poll !== null) clearTimeout(this.poll);
    this.poll = null;
  }

  private revoke(): void {
    for (const url of this.urls.splice(0)) URL.revokeObjectURL(url);
  }

  destroy(): void {
    this.stopPolling();
    this.revoke();
    this.el.remove();
  }
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(cls: string, text: string, onClick: () => void, title?: string): HTMLButtonElement {
  const b = el("button", cls, text);
  b.type = "button";
  if (title) { b.title = title; b.setAttribute("aria-label", title); }
  b.addEventListener("click", (e) => { e.stopPropagation(); onClick(); });
  return b;
}
