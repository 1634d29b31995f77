/**
 * One canvas view for gesture tests, without a browser: the real doc binding (through the
 * relay, as to the kernel), scene, renderer (on a recording 2D context), editor, overlays (on
 * the fake DOM of `dom.ts`) and pointer input, joined by a `Host` that does what `app.ts`
 * does for the calls these tests make. The view shows graph units 1:1 (zoom 1, no pan), so
 * a pointer at (x, y) is at graph point (x, y).
 */
import { vi } from "vitest";
import * as Y from "yjs";
import { GraphDoc } from "../../src/docmodel";
import { Editor } from "../../src/edit/editor";
import type { Host } from "../../src/edit/host";
import { PointerInput } from "../../src/edit/pointer";
import { Renderer } from "../../src/render/renderer";
import { RunState } from "../../src/runstate";
import { Scene } from "../../src/scene";
import { CommProvider } from "../../src/sync";
import { Overlays } from "../../src/ui/overlays";
import { fakeDocument, type FakeElement } from "./dom";
import { SPECS } from "./fixtures";
import type { Relay } from "./relay";

export interface Call { op: string; args: unknown[] }

/** A 2D context that records the calls named in `ops` (and measures text as 7 px a character). */
export function recordingCanvas(ops: string[], w = 1600, h = 900) {
  const calls: Call[] = [];
  const state: Record<string | symbol, unknown> = {};
  const ctx = new Proxy(state, {
    get: (t, k) => (k === "measureText" ? (s: string) => ({ width: s.length * 7 })
      : typeof k === "string" && ops.includes(k) ? (...args: unknown[]) => { calls.push({ op: k, args }); }
      : k in t ? t[k] : () => undefined),
    set: (t, k, v) => { t[k] = v; return true; },
  });
  return { clientWidth: w, clientHeight: h, width: w, height: h, getContext: () => ctx, calls };
}

/** Installs the fake DOM and a requestAnimationFrame that never fires (tests draw by hand). */
export function stubBrowser(): void {
  vi.stubGlobal("document", fakeDocument());
  vi.stubGlobal("requestAnimationFrame", () => 1);
  vi.stubGlobal("cancelAnimationFrame", () => undefined);
}

export function testView(relay: Relay) {
  const doc = new Y.Doc();
  const comm = relay.comm();
  new CommProvider(doc, comm, { onMessage: () => undefined }).start();
  const g = new GraphDoc(doc, { user: doc.clientID });
  const scene = new Scene(g, SPECS);
  const canvas = recordingCanvas(["drawImage", "fillRect"]);
  const r = new Renderer(canvas as unknown as HTMLCanvasElement, scene, new RunState());
  const editor = new Editor(g, scene);
  const stage = document.createElement("div") as unknown as FakeElement;
  const overlays = new Overlays(stage as unknown as HTMLElement, () => undefined, scene);
  const toasts: string[] = [];
  const unused = (): never => { throw new Error("not part of these tests"); };
  const host: Host = {
    r, scene, editor,
    toast: (message) => { toasts.push(message); },
    setSelection(ids) { r.selected.clear(); for (const id of ids) r.selected.add(id); },
    editGroupTitle: (id) => overlays.editGroupTitle(id, r.view, (t) => editor.renameGroup(id, t)),
    editTitle: (n) => overlays.editTitle(n, r.view, (t) => g.setTitle(n.id, t)),
    openAddPalette: unused, openCommandPalette: unused, openWidget: unused,
    fit: unused, copy: unused, paste: unused, group: unused, ungroup: unused, send: unused,
    guard: (fn) => fn(), pointerAt: () => undefined,
  };
  const el = { getBoundingClientRect: () => ({ left: 0, top: 0 }), style: {} as Record<string, string> };
  const pointer = new PointerInput(host, el as unknown as HTMLCanvasElement);
  return { doc, comm, g, scene, canvas, r, editor, overlays, stage, toasts, host, el, pointer };
}

export type TestView = ReturnType<typeof testView>;

/** A pointer event at canvas point (x, y) (= graph point at zoom 1). */
export function at(x: number, y: number): PointerEvent {
  return { clientX: x, clientY: y, button: 0, altKey: false, shiftKey: false, ctrlKey: false, metaKey: false } as PointerEvent;
}

/** Presses at `from`, moves to `to` in `steps` pointer moves; releases unless `release` is false. */
export function drag(v: TestView, from: [number, number], to: [number, number], steps = 5, release = true): void {
  v.pointer.down(at(...from));
  for (let i = 1; i <= steps; i++) {
    v.pointer.move(at(from[0] + ((to[0] - from[0]) * i) / steps, from[1] + ((to[1] - from[1]) * i) / steps));
  }
  if (release) v.pointer.up(at(...to));
}

/** The kernel's (relay's) copy of a node's field. */
export function kernelField(relay: Relay, id: string, field: string): unknown {
  return (relay.doc.getMap("nodes").get(id) as Y.Map<unknown> | undefined)?.get(field);
}

/** Updates this view sent to the kernel so far. */
export function updatesSent(v: TestView): number {
  return v.comm.sent.filter((s) => s.content.t === "y").length;
}
