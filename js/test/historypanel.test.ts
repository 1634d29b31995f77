import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { PanelRequest, RunRow } from "../src/protocol";
import { HistoryPanel, POLL_MS } from "../src/ui/history";
import { FakeElement, fakeDocument } from "./helpers/dom";

const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const row = (id: string, status = "ok"): RunRow => ({
  id, started: 100, finished: 101, status, origin: "canvas", who: null, elapsed: 0.5,
  ran: 1, cached: 0, failed: 0, seeds: { k: 7 }, prompts: {},
});

function setup() {
  vi.stubGlobal("document", fakeDocument());
  const stage = new FakeElement("DIV");
  const sent: PanelRequest[] = [];
  const panel = new HistoryPanel(stage as unknown as HTMLElement, (m) => sent.push(m), () => 200);
  const el = panel.el as unknown as FakeElement;
  const click = (cls: string, index = 0): void => el.querySelectorAll(`.${cls}`)[index].fire("click");
  return { panel, el, sent, click };
}

describe("the history panel", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => { vi.useRealTimers(); vi.unstubAllGlobals(); });

  it("opens hidden-by-default, asks for the runs and the queue, and lists what comes back", () => {
    const { panel, el, sent } = setup();
    expect(panel.open).toBe(false);
    expect(panel.toggle()).toBe(true);
    expect(sent).toEqual([{ t: "history" }, { t: "queue_list" }]);
    panel.receive({ t: "runs", rows: [row("r2", "failed"), row("r1")] }, []);
    const entries = el.querySelectorAll(".vx-run-entry");
    expect(entries.map((e) => e.dataset.run)).toEqual(["r2", "r1"]);
    expect(el.find("vx-run-status")?.textContent).toBe("failed");
    expect(el.find("vx-run-counts")?.textContent).toBe("1 ran · 500 ms");
    expect(el.find("vx-run-detail")?.textContent).toBe("seed 7");
  });

  it("shows a clicked run's diff with a Restore button that asks to restore that run", () => {
    const { panel, el, sent, click } = setup();
    panel.show();
    panel.receive({ t: "runs", rows: [row("r2"), row("r1")] }, []);
    sent.length = 0;
    click("vx-run", 1);
    expect(sent).toEqual([{ t: "diff", run_id: "r1" }]);
    panel.receive({ t: "run_diff", run_id: "r1", lines: ["node 3 (KSampler): steps 20 -> 30"], errors: [] }, []);
    const diff = el.find("vx-run-diff") as FakeElement;
    expect(diff.parent?.dataset.run).toBe("r1"); // under its run
    expect(diff.find("vx-diff-line")?.textContent).toBe("node 3 (KSampler): steps 20 -> 30");
    diff.find("vx-restore")?.fire("click");
    expect(sent.at(-1)).toEqual({ t: "restore", run_id: "r1" });
    panel.receive({ t: "restored", run_id: "r1", edits: 1 }, []);
    expect(sent.at(-1)).toEqual({ t: "diff", run_id: "r1" }); // the diff is asked for again: now empty
  });

  it("drops a diff that arrives for a run no longer selected, and keeps the shown one across a refresh", () => {
    const { panel, el, click } = setup();
    panel.show();
    panel.receive({ t: "runs", rows: [row("r2"), row("r1")] }, []);
    click("vx-run", 0);
    click("vx-run", 1);
    panel.receive({ t: "run_diff", run_id: "r2", lines: ["late"], errors: [] }, []);
    expect(el.querySelectorAll("vx-diff-line")).toEqual([]);
    panel.receive({ t: "run_diff", run_id: "r1", lines: [], errors: ["k (KSampler): VE-500 boom"] }, []);
    panel.receive({ t: "runs", rows: [row("r3"), row("r2"), row("r1")] }, []);
    const diff = el.find("vx-run-diff") as FakeElement;
    expect(diff.parent?.dataset.run).toBe("r1");
    expect(diff.find("vx-diff-error")?.textContent).toBe("k (KSampler): VE-500 boom");
  });

  it("asks again while a listed run is still running, and stops once none is or the panel closes", () => {
    const { panel, sent } = setup();
    panel.show();
    panel.receive({ t: "runs", rows: [row("r1", "running")] }, []);
    sent.length = 0;
    vi.advanceTimersByTime(POLL_MS);
    expect(sent).toEqual([{ t: "history" }]);
    panel.receive({ t: "runs", rows: [row("r1", "running")] }, []);
    panel.hide();
    vi.advanceTimersByTime(POLL_MS * 3);
    expect(sent).toEqual([{ t: "history" }]);
  });

  it("shows gallery thumbnails from the message's buffers; a click restores that image's run", () => {
    const { panel, el, sent, click } = setup();
    panel.show();
    click("vx-history-tab-gallery");
    expect(sent.at(-1)).toEqual({ t: "gallery" });
    panel.receive({ t: "gallery_items", items: [
      { run_id: "r9", node: "save", path: "/o/a.png", sha256: null, started: 1, seeds: { k: 3 }, prompts: { p: "a fox" }, thumb: 0 },
      { run_id: "r8", node: "save", path: "/o/b.png", sha256: null, started: 1, seeds: {}, prompts: {}, thumb: null },
    ] }, [PNG]);
    const thumbs = el.querySelectorAll(".vx-thumb");
    expect(thumbs.map((t) => t.dataset.run)).toEqual(["r9", "r8"]);
    expect((thumbs[0].find("vx-thumb-img") as unknown as { src: string }).src).toMatch(/^blob:/);
    expect(thumbs[0].find("vx-thumb-caption")?.textContent).toBe("a fox · seed 3");
    expect(thumbs[1].find("vx-thumb-none")).toBeDefined();
    thumbs[1].fire("click");
    expect(sent.at(-1)).toEqual({ t: "restore", run_id: "r8" });
    panel.destroy();
  });

  it("lists the queue with Pause or Resume and a cancel button per item", () => {
    const { panel, el, sent, click } = setup();
    panel.receive({ t: "queue_items", paused: false, items: [
      { id: 4, status: "running", priority: 0, created: 0, origin: "canvas", run_id: "r", error: null },
      { id: 5, status: "queued", priority: 1, created: 0, origin: "canvas", run_id: null, error: null },
    ] }, []);
    expect(el.find("vx-queue-count")?.textContent).toBe("Queue: 2 pending");
    click("vx-queue-pause");
    expect(sent.at(-1)).toEqual({ t: "queue_pause" });
    click("vx-queue-cancel", 1);
    expect(sent.at(-1)).toEqual({ t: "queue_cancel", item: 5 });
    panel.receive({ t: "queue_items", paused: true, items: [] }, []);
    expect(el.find("vx-queue-count")?.textContent).toBe("Queue: empty · paused");
    click("vx-queue-resume");
    expect(sent.at(-1)).toEqual({ t: "queue_resume" });
  });
});
