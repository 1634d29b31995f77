import { describe, expect, it } from "vitest";
import {
  diffHeading, formatElapsed, formatWhen, galleryCaption, pendingCount, promptText, queueAdvanced, queueItemText,
  queueLabel, runCounts, runDetail, seedsText,
} from "../src/history";
import type { GalleryItem, QueueItem, RunRow } from "../src/protocol";

const row = (extra: Partial<RunRow> = {}): RunRow => ({
  id: "r1", started: 1000, finished: 1001, status: "ok", origin: "canvas", who: "ada", elapsed: 1.25,
  ran: 3, cached: 2, failed: 0, seeds: {}, prompts: {}, ...extra,
});
const item = (id: number, status = "queued", priority = 0): QueueItem => ({
  id, status, priority, created: 0, origin: "canvas", run_id: null, error: null,
});

describe("history panel text", () => {
  it("says when a run started relative to now, then as a clock time or a date", () => {
    const now = new Date(2026, 11, 1, 15, 30, 0).getTime() / 1000;
    expect(formatWhen(now - 3, now)).toBe("just now");
    expect(formatWhen(now - 42, now)).toBe("42 s ago");
    expect(formatWhen(now - 5 * 60 - 10, now)).toBe("5 min ago");
    expect(formatWhen(new Date(2026, 11, 1, 9, 5).getTime() / 1000, now)).toBe("09:05");
    expect(formatWhen(new Date(2026, 10, 30, 23, 59).getTime() / 1000, now)).toBe("2026-11-30 23:59");
  });

  it("gives durations in the unit that reads best, and a dash for a run still going", () => {
    expect(formatElapsed(null)).toBe("–");
    expect(formatElapsed(0.0423)).toBe("42 ms");
    expect(formatElapsed(3.21)).toBe("3.2 s");
    expect(formatElapsed(125)).toBe("2 min 5 s");
  });

  it("counts what ran, leaving zeros out", () => {
    expect(runCounts(row())).toBe("3 ran · 2 cached");
    expect(runCounts(row({ ran: 0, cached: 0, failed: 1 }))).toBe("1 failed");
    expect(runCounts(row({ ran: 0, cached: 0 }))).toBe("nothing ran");
  });

  it("shows seeds exactly, big ones arriving as text, and the first prompt on one cut line", () => {
    expect(seedsText({})).toBe("");
    expect(seedsText({ k: 42 })).toBe("seed 42");
    expect(seedsText({ a: "1152921504606846983", b: 7, c: 7 })).toBe("seeds 1152921504606846983, 7");
    expect(promptText({ "6": "  a red\n fox  " })).toBe("a red fox");
    expect(promptText({ "6": "x".repeat(100) }, 10)).toBe(`${"x".repeat(9)}…`);
    expect(runDetail(row({ seeds: { k: 5 }, prompts: { p: "a cat" } }))).toBe("a cat · seed 5");
    expect(runDetail(row())).toBe("");
  });

  it("captions a thumbnail with its prompt and seed, else the node that saved it", () => {
    const g: GalleryItem = { run_id: "r", node: "save", path: "/o/a.png", sha256: null, started: 1, seeds: {}, prompts: {}, thumb: 0 };
    expect(galleryCaption(g)).toBe("from save");
    expect(galleryCaption({ ...g, seeds: { k: 3 }, prompts: { p: "a dog" } })).toBe("a dog · seed 3");
  });

  it("labels the Queue button with the pending count", () => {
    const items = [item(1, "running"), item(2), item(3, "cancelled")];
    expect(pendingCount(items)).toBe(2);
    expect(queueLabel(0)).toBe("+ Queue");
    expect(queueLabel(2)).toBe("+ Queue (2)");
    expect(queueItemText(item(13, "queued", 2))).toBe("#13 queued · priority 2");
    expect(queueItemText(item(12, "running"))).toBe("#12 running");
  });

  it("notices when the queue moved on (an item left or changed status), not when one was added", () => {
    expect(queueAdvanced([], [item(1)])).toBe(false);
    expect(queueAdvanced([item(1)], [item(1), item(2)])).toBe(false);
    expect(queueAdvanced([item(1)], [item(1, "running")])).toBe(true);
    expect(queueAdvanced([item(1, "running"), item(2)], [item(2)])).toBe(true);
  });

  it("heads a diff with what Restore would do", () => {
    expect(diffHeading([])).toMatch(/^No node, param or link changed/);
    expect(diffHeading(["node 1 (KSampler): steps 20 -> 30"])).toBe("Changed since this run (Restore takes it back):");
    expect(diffHeading(["a", "b"])).toBe("Changed since this run (Restore takes these 2 back):");
  });
});
