/**
 * Run state shown on the canvas: per-node state, progress, error message, the node's last
 * progress text (a note such as "embedding 'x' not found", kept after it finishes) and images.
 *
 * Fed by kernel `{"t":"event"}` messages (engine events) and `{"t":"image"}` binary
 * messages. Never in the Y doc: each view keeps its own copy, reset at every run start.
 */
import type { EngineEvent, Problem } from "./protocol";

export type NodeState = "idle" | "queued" | "running" | "cached" | "done" | "failed";

export interface FinalImage { node: string; url: string; mime: string }

export class RunState {
  readonly states = new Map<string, NodeState>();
  readonly progress = new Map<string, number>();
  readonly errors = new Map<string, string>();
  readonly notes = new Map<string, string>();
  readonly images = new Map<string, CanvasImageSource & { width: number; height: number }>();
  finals: FinalImage[] = [];
  running = false;
  lastStatus = "";

  state(id: string): NodeState {
    return this.states.get(id) ?? "idle";
  }

  /** Applies one engine event; returns true when something visible changed. */
  apply(ev: EngineEvent): boolean {
    const node = ev.node ?? "";
    switch (ev.kind) {
      case "run_started":
        this.reset();
        this.running = true;
        for (const id of ev.planned ?? []) this.states.set(id, "queued");
        for (const id of ev.cached ?? []) this.states.set(id, "cached");
        return true;
      case "node_queued": this.states.set(node, "queued"); return true;
      case "node_started": this.states.set(node, "running"); this.progress.set(node, 0); return true;
      case "node_progress": {
        const total = typeof ev.total === "number" && ev.total > 0 ? ev.total : 1;
        this.progress.set(node, Math.max(0, Math.min(1, (ev.value ?? 0) / total)));
        if (typeof ev.text === "string" && ev.text) this.notes.set(node, ev.text);
        return true;
      }
      case "node_cached": this.states.set(node, "cached"); return true;
      case "node_finished": this.states.set(node, "done"); this.progress.set(node, 1); return true;
      case "node_failed":
        this.states.set(node, "failed");
        this.errors.set(node, `${ev.code ?? "VE-500"}: ${ev.message ?? "failed"}`);
        return true;
      case "run_finished":
        this.running = false;
        this.lastStatus = String(ev.status ?? "");
        return true;
      default:
        return false;
    }
  }

  /**
   * A run refused for validation problems: each node with a problem shows as failed with its
   * problems (code, port, message, fix) so the user sees where to act, not a list in a toast.
   * The next run_started clears them.
   */
  markProblems(problems: Problem[]): number {
    this.states.clear(); // not reset(): the last run's output images stay listed
    this.progress.clear();
    this.errors.clear();
    this.notes.clear();
    const byNode = new Map<string, string[]>();
    for (const p of problems) {
      if (!p.node) continue;
      const text = `${p.code}${p.port ? ` ${p.port}` : ""}: ${p.message}${p.hint ? ` (fix: ${p.hint})` : ""}`;
      byNode.set(p.node, [...(byNode.get(p.node) ?? []), text]);
    }
    for (const [node, texts] of byNode) {
      this.states.set(node, "failed");
      this.errors.set(node, texts.length > 1 ? `${texts.length} problems: ${texts.join("; ")}` : texts[0]);
    }
    return byNode.size;
  }

  /** Clears per-node state and the previous run's output list (keeps node images). */
  reset(): void {
    this.states.clear();
    this.progress.clear();
    this.errors.clear();
    this.notes.clear();
    for (const f of this.finals) URL.revokeObjectURL(f.url);
    this.finals = [];
  }
}

/** Fill colors of the node body by state (idle uses the category color). */
export const STATE_COLORS: Record<NodeState, string> = {
  idle: "",
  queued: "#5a5f7a",
  running: "#2f7fd0",
  cached: "#3f6f5a",
  done: "#2f8f4e",
  failed: "#b8383b",
};
