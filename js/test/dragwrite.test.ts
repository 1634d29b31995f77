import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DRAG_WRITE_MS } from "../src/edit/pointer";
import { drag, kernelField, stubBrowser, testView, updatesSent } from "./helpers/host";
import { Relay } from "./helpers/relay";

function graph() {
  const relay = new Relay();
  const v = testView(relay);
  v.g.addNode({ id: "b", type: "Blur", x: 100, y: 50, params: {} });
  v.editor.undo.clear();
  const n = v.scene.nodes.get("b")!;
  return { relay, v, grab: [n.x + 20, n.y + 10] as [number, number] };
}

beforeEach(() => { stubBrowser(); vi.useFakeTimers(); });
afterEach(() => { vi.useRealTimers(); vi.unstubAllGlobals(); });

describe("dragging a node", () => {
  it("shows every move here but writes the doc at most every DRAG_WRITE_MS, and the end on release", () => {
    const { relay, v, grab } = graph();
    const sent = updatesSent(v);
    drag(v, grab, [grab[0] + 300, grab[1] + 120], 60, false); // 60 pointer moves, no time passes
    const n = v.scene.nodes.get("b")!;
    expect([n.x, n.y]).toEqual([400, 170]); // the view shows the last position at once
    expect(updatesSent(v) - sent).toBe(1); // the first move wrote; the rest wait (a burst)
    vi.advanceTimersByTime(DRAG_WRITE_MS); // then the latest position goes out
    expect(updatesSent(v) - sent).toBe(2);
    expect([kernelField(relay, "b", "x"), kernelField(relay, "b", "y")]).toEqual([400, 170]);
    v.pointer.up({ clientX: grab[0] + 300, clientY: grab[1] + 120, button: 0 } as PointerEvent);
    expect(updatesSent(v) - sent).toBe(2); // nothing new to write on release
  });

  it("writes the drop position on release even inside the write interval, as one undo step", () => {
    const { relay, v, grab } = graph();
    drag(v, grab, [grab[0] + 50, grab[1]], 10); // released within the interval
    expect(kernelField(relay, "b", "x")).toBe(150);
    v.editor.undo.undo();
    expect(kernelField(relay, "b", "x")).toBe(100);
    expect(v.editor.undo.canUndo()).toBe(false);
  });
});
