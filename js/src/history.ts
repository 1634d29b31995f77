/**
 * What the history panel (`ui/history.ts`) shows of runs, outputs and the queue, as plain
 * text: times, counts, captions, the Queue button's label. Pure functions (unit-tested); the
 * data comes from the kernel's `runs`, `gallery_items` and `queue_items` messages
 * (`protocol.ts`).
 */
import type { GalleryItem, QueueItem, RunRow } from "./protocol";

/** When a run started, relative to `now` (both Unix seconds): "just now", "5 min ago", "14:03", "2026-12-01 14:03". */
export function formatWhen(started: number, now: number): string {
  const ago = now - started;
  if (ago < 10) return "just now";
  if (ago < 60) return `${Math.floor(ago)} s ago`;
  if (ago < 3600) return `${Math.floor(ago / 60)} min ago`;
  const d = new Date(started * 1000);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const today = new Date(now * 1000);
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** A run's duration: "–" (not finished), "850 ms", "3.2 s", "2 min 5 s". */
export function formatElapsed(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} min ${Math.round(seconds - m * 60)} s`;
}

/** "3 ran · 2 cached · 1 failed" (zero counts left out; "nothing ran" when all are). */
export function runCounts(row: Pick<RunRow, "ran" | "cached" | "failed">): string {
  const parts = [[row.ran, "ran"], [row.cached, "cached"], [row.failed, "failed"]]
    .filter(([n]) => Number(n) > 0).map(([n, what]) => `${n} ${what}`);
  return parts.length ? parts.join(" · ") : "nothing ran";
}

/** "seed 42", "seeds 42, 7" or "" (seeds past 2^53 - 1 arrive as text and stay exact). */
export function seedsText(seeds: Record<string, number | string>): string {
  const values = [...new Set(Object.values(seeds).map(String))];
  if (!values.length) return "";
  return `${values.length > 1 ? "seeds" : "seed"} ${values.join(", ")}`;
}

/** The first prompt on one line, cut to `max` characters with "…" (or ""). */
export function promptText(prompts: Record<string, string>, max = 80): string {
  const first = Object.values(prompts).find((p) => p.trim());
  if (!first) return "";
  const line = first.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** A run's second line in the list: its prompt and seed, or its origin alone. */
export function runDetail(row: RunRow): string {
  return [promptText(row.prompts, 60), seedsText(row.seeds)].filter(Boolean).join(" · ");
}

/** A gallery thumbnail's caption: prompt · seed, else the node that wrote it. */
export function galleryCaption(item: GalleryItem): string {
  return [promptText(item.prompts, 40), seedsText(item.seeds)].filter(Boolean).join(" · ") || `from ${item.node}`;
}

/** Queue items waiting or running. */
export function pendingCount(items: readonly QueueItem[]): number {
  return items.filter((i) => i.status === "queued" || i.status === "running").length;
}

/** The Queue button's label: "+ Queue", or "+ Queue (3)" while items are pending. */
export function queueLabel(pending: number): string {
  return pending > 0 ? `+ Queue (${pending})` : "+ Queue";
}

/** One queue item in the panel: "#12 running", "#13 queued · priority 2". */
export function queueItemText(item: QueueItem): string {
  return `#${item.id} ${item.status}${item.priority ? ` · priority ${item.priority}` : ""}`;
}

/** Whether an item left the pending queue (it ran, or was cancelled): the runs listed are stale. */
export function queueAdvanced(before: readonly QueueItem[], after: readonly QueueItem[]): boolean {
  const now = new Map(after.map((i) => [i.id, i.status]));
  return before.some((i) => now.get(i.id) !== i.status);
}

/** What the panel says above a run's diff (the kernel words each change from that run to now). */
export function diffHeading(lines: readonly string[]): string {
  return lines.length
    ? `Changed since this run (Restore takes ${lines.length === 1 ? "it" : `these ${lines.length}`} back):`
    : "No node, param or link changed since this run (Restore puts back its layout too).";
}
