import { describe, expect, it } from "vitest";
import { RunState } from "../src/runstate";

const ev = (kind: string, extra: Record<string, unknown> = {}) => ({ kind, run_id: "r1", ...extra });

describe("run state from engine events", () => {
  it("follows a run: queued, running with progress, cached, done, failed with message", () => {
    const s = new RunState();
    s.apply(ev("run_started", { planned: ["a", "b", "c"], cached: ["k"] }));
    expect(s.running).toBe(true);
    expect(s.state("a")).toBe("queued");
    expect(s.state("k")).toBe("cached");
    s.apply(ev("node_started", { node: "a" }));
    s.apply(ev("node_progress", { node: "a", value: 3, total: 4 }));
    expect(s.state("a")).toBe("running");
    expect(s.progress.get("a")).toBeCloseTo(0.75);
    s.apply(ev("node_finished", { node: "a" }));
    s.apply(ev("node_failed", { node: "b", code: "VE-500", message: "boom in b" }));
    expect(s.state("a")).toBe("done");
    expect(s.state("b")).toBe("failed");
    expect(s.errors.get("b")).toBe("VE-500: boom in b");
    s.apply(ev("run_finished", { status: "failed" }));
    expect(s.running).toBe(false);
    expect(s.lastStatus).toBe("failed");
  });

  it("a new run clears the previous run's states", () => {
    const s = new RunState();
    s.apply(ev("node_failed", { node: "b", message: "x" }));
    s.apply(ev("run_started", { planned: ["a"] }));
    expect(s.state("b")).toBe("idle");
    expect(s.errors.size).toBe(0);
  });

  it("keeps a node's last progress text as its note until the next run", () => {
    const s = new RunState();
    s.apply(ev("run_started", { planned: ["e"] }));
    s.apply(ev("node_progress", { node: "e", value: 0, total: 1, text: "embedding 'ghost' not found, skipped" }));
    s.apply(ev("node_progress", { node: "e", value: 1, total: 1 }));
    s.apply(ev("node_finished", { node: "e" }));
    expect(s.notes.get("e")).toBe("embedding 'ghost' not found, skipped");
    s.apply(ev("run_started", { planned: ["e"] }));
    expect(s.notes.size).toBe(0);
  });

  it("ignores unknown events and clamps progress", () => {
    const s = new RunState();
    expect(s.apply(ev("something_new"))).toBe(false);
    s.apply(ev("node_progress", { node: "a", value: 9, total: 4 }));
    expect(s.progress.get("a")).toBe(1);
  });
});

describe("output image identity", () => {
  it("the same bytes for the same node give the same key, other bytes another", async () => {
    const { imageKey } = await import("../src/ui/outputs");
    const a = new Uint8Array([137, 80, 78, 71, 1, 2, 3]);
    expect(imageKey("n", a)).toBe(imageKey("n", a.slice()));
    expect(imageKey("n", a)).not.toBe(imageKey("m", a));
    expect(imageKey("n", a)).not.toBe(imageKey("n", new Uint8Array([137, 80, 78, 71, 1, 2, 4])));
  });
});

describe("a run refused for validation problems", () => {
  it("marks each node with its problems (was: one toast listing them all, nodes unmarked)", () => {
    const s = new RunState();
    s.apply(ev("node_finished", { node: "old" }));
    const n = s.markProblems([
      { code: "VE-101", node: "ghost", port: null, message: "unknown node type 'X'", hint: "register it" },
      { code: "VE-102", node: "k", port: "model", message: "required input 'model' has no link" },
      { code: "VE-102", node: "k", port: "positive", message: "required input 'positive' has no link" },
      { code: "VE-111", node: null, port: null, message: "cycle a -> b -> a" },
    ]);
    expect(n).toBe(2);
    expect(s.state("ghost")).toBe("failed");
    expect(s.errors.get("ghost")).toBe("VE-101: unknown node type 'X' (fix: register it)");
    expect(s.errors.get("k")).toBe(
      "2 problems: VE-102 model: required input 'model' has no link; VE-102 positive: required input 'positive' has no link");
    expect(s.state("old")).toBe("idle"); // the previous run's states are gone
    s.apply(ev("run_started", { planned: ["k"] }));
    expect(s.errors.size).toBe(0);
  });
});
