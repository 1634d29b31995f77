import { afterEach, describe, expect, it, vi } from "vitest";
import * as Y from "yjs";
import type { CanvasApp } from "../src/app";
import { commandItems, runCommand } from "../src/commands";
import { GraphDoc } from "../src/docmodel";
import { Editor } from "../src/edit/editor";
import type { Host } from "../src/edit/host";
import { handleKey } from "../src/edit/keys";
import { BYPASS_TINT, MUTED_ALPHA, NOTE_COLOR } from "../src/render/draw";
import { Renderer } from "../src/render/renderer";
import { RunState } from "../src/runstate";
import { Scene } from "../src/scene";
import { CommProvider } from "../src/sync";
import { NodeList } from "../src/ui/a11y";
import { fakeDocument, type FakeElement } from "./helpers/dom";
import { SPECS } from "./helpers/fixtures";
import { Relay } from "./helpers/relay";

interface Paint { op: string; style: unknown; alpha: number; args: number[] }

/** A 2D context that records every fill with the fill style and alpha it used. */
function recordingCanvas(w = 1600, h = 900) {
  const paints: Paint[] = [];
  const state: Record<string | symbol, unknown> = { globalAlpha: 1, fillStyle: "#000" };
  const record = (op: string) => (...args: number[]) => {
    paints.push({ op, style: state.fillStyle, alpha: state.globalAlpha as number, args });
  };
  const ctx = new Proxy(state, {
    get: (t, k) => (k === "fill" || k === "fillRect" ? record(k) : k === "measureText" ? () => ({ width: 10 })
      : k in t ? t[k] : () => undefined),
    set: (t, k, v) => { t[k] = v; return true; },
  });
  return { clientWidth: w, clientHeight: h, width: w, height: h, getContext: () => ctx, paints };
}

/** One canvas view on the relay: the real doc binding, scene, renderer and editor. */
function view(relay: Relay) {
  const doc = new Y.Doc();
  const comm = relay.comm();
  new CommProvider(doc, comm, { onMessage: vi.fn() }).start();
  const g = new GraphDoc(doc, { user: doc.clientID });
  const scene = new Scene(g, SPECS);
  const canvas = recordingCanvas();
  const r = new Renderer(canvas as unknown as HTMLCanvasElement, scene, new RunState());
  const editor = new Editor(g, scene);
  const toasts: string[] = [];
  const host = {
    r, scene, editor,
    toast: (message: string) => { toasts.push(message); },
    setSelection(ids: Iterable<string>) { r.selected.clear(); for (const id of ids) r.selected.add(id); },
  } as unknown as Host;
  return { doc, comm, g, scene, canvas, r, editor, host, toasts };
}

const ctrl = (k: string) => ({ key: k, ctrlKey: true, metaKey: false, shiftKey: false }) as KeyboardEvent;

function kernelMode(relay: Relay, id: string): unknown {
  return (relay.doc.getMap("nodes").get(id) as Y.Map<unknown>).get("mode");
}

function threeNodes(relay: Relay) {
  const v = view(relay);
  v.g.addNode({ id: "a", type: "Loader", x: 0, y: 0, params: {} });
  v.g.addNode({ id: "b", type: "Blur", x: 300, y: 0, params: {} });
  v.g.addNode({ id: "c", type: "KSampler", x: 600, y: 0, params: {} });
  v.editor.undo.clear();
  return v;
}

afterEach(() => { vi.unstubAllGlobals(); });

describe("mute and bypass from the keyboard", () => {
  it("Ctrl+B bypasses the selection, again restores it, and undo / redo follow", () => {
    const relay = new Relay();
    const v = threeNodes(relay);
    relay.edit((d) => (d.getMap("nodes").get("a") as Y.Map<unknown>).set("mode", 4)); // bypassed in Python
    v.host.setSelection(["a", "b"]);
    const sent = v.comm.sent.length;
    expect(handleKey(v.host, ctrl("b"))).toBe(true);
    expect(v.comm.sent.length - sent).toBe(1); // one transaction: one update to the kernel
    expect([kernelMode(relay, "a"), kernelMode(relay, "b"), kernelMode(relay, "c")]).toEqual([4, 4, undefined]);
    expect(v.scene.nodes.get("b")?.mode).toBe(4);
    handleKey(v.host, ctrl("B")); // all bypassed: back to always (Caps Lock / Shift too)
    expect([kernelMode(relay, "a"), kernelMode(relay, "b")]).toEqual([undefined, undefined]);
    v.editor.undo.undo();
    expect([kernelMode(relay, "a"), kernelMode(relay, "b")]).toEqual([4, 4]);
    v.editor.undo.undo();
    expect([kernelMode(relay, "a"), kernelMode(relay, "b")]).toEqual([4, undefined]); // the kernel's edit stays
    v.editor.undo.redo();
    expect(v.scene.nodes.get("b")?.mode).toBe(4);
  });

  it("Ctrl+M mutes (a bypassed node too), again unmutes, and undo restores the mode before", () => {
    const relay = new Relay();
    const v = threeNodes(relay);
    v.host.setSelection(["c"]);
    handleKey(v.host, ctrl("b"));
    handleKey(v.host, ctrl("m"));
    expect(kernelMode(relay, "c")).toBe(2);
    handleKey(v.host, ctrl("m"));
    expect(kernelMode(relay, "c")).toBeUndefined();
    v.editor.undo.undo();
    expect(kernelMode(relay, "c")).toBe(2);
    v.editor.undo.undo();
    expect(kernelMode(relay, "c")).toBe(4);
  });

  it("without a selection the keys say what to do and change nothing", () => {
    const relay = new Relay();
    const v = threeNodes(relay);
    const before = Y.encodeStateAsUpdate(relay.doc);
    expect(handleKey(v.host, ctrl("m"))).toBe(true);
    expect(v.toasts).toEqual(["Select nodes to mute first"]);
    expect(Y.encodeStateAsUpdate(relay.doc)).toEqual(before);
    expect(handleKey(v.host, { ...ctrl("b"), ctrlKey: false } as KeyboardEvent)).toBe(false); // plain "b"
  });

  it("the command palette has both toggles and they act on the selection", () => {
    const relay = new Relay();
    const v = threeNodes(relay);
    const items = commandItems();
    expect(items.find((i) => i.id === "mute")).toMatchObject({ label: "Mute / unmute selected", detail: "Ctrl+M" });
    expect(items.find((i) => i.id === "bypass")).toMatchObject({ label: "Bypass / unbypass selected", detail: "Ctrl+B" });
    v.host.setSelection(["a"]);
    runCommand(v.host as unknown as CanvasApp, "bypass");
    expect(kernelMode(relay, "a")).toBe(4);
    runCommand(v.host as unknown as CanvasApp, "mute");
    expect(kernelMode(relay, "a")).toBe(2);
  });
});

describe("how modes look", () => {
  it("the hidden node list carries data-mode and says it in the label", () => {
    vi.stubGlobal("document", fakeDocument());
    const relay = new Relay();
    const v = threeNodes(relay);
    relay.edit((d) => (d.getMap("nodes").get("b") as Y.Map<unknown>).set("mode", 2));
    v.host.setSelection(["c"]);
    handleKey(v.host, ctrl("b"));
    const parent = fakeDocument().createElement("div");
    const list = new NodeList(parent as unknown as HTMLElement, v.r, 0);
    v.r.draw();
    list.update(true);
    const items = (list.el as unknown as FakeElement).children;
    const modes = Object.fromEntries(items.map((li) => [li.dataset.nodeId, li.dataset.mode]));
    expect(modes).toEqual({ a: "always", b: "muted", c: "bypassed" });
    expect(items.find((li) => li.dataset.nodeId === "b")?.getAttribute("aria-label")).toContain(", muted,");
    handleKey(v.host, ctrl("b"));
    v.r.draw();
    list.update();
    expect(items.find((li) => li.dataset.nodeId === "c")?.dataset.mode).toBe("always");
  });

  it.each([[1, "full"], [0.4, "frames"], [0.05, "boxes"]])("muted nodes fade and bypassed ones get a purple wash (zoom %s: %s)", (zoom) => {
    const relay = new Relay();
    const v = threeNodes(relay);
    v.host.setSelection(["a"]);
    handleKey(v.host, ctrl("m"));
    v.host.setSelection(["b"]);
    handleKey(v.host, ctrl("b"));
    v.r.view = { zoom, panX: 10, panY: 10 };
    v.r.draw();
    const paints = v.canvas.paints;
    const faded = paints.filter((p) => p.alpha === MUTED_ALPHA);
    const tinted = paints.filter((p) => p.style === BYPASS_TINT && p.alpha === 1);
    expect(faded.length).toBeGreaterThan(0);
    expect(tinted.length).toBeGreaterThan(0);
    if (zoom > 0.1) { // in graph units: the fade covers node a only, the wash node b's rectangle
      expect(faded.every((p) => p.op === "fillRect" ? p.args[0] < 300 : true)).toBe(true);
      const b = v.scene.nodes.get("b")!;
      expect(tinted[0].args).toEqual([b.x, b.y, b.w, b.h]);
    }
    v.canvas.paints.length = 0;
    v.g.setModes(["a", "b"], 0);
    v.r.draw();
    expect(v.canvas.paints.some((p) => p.alpha !== 1 || p.style === BYPASS_TINT)).toBe(false);
  });
});

describe("node notes", () => {
  it("a node's progress text shows as a banner under it, a failure's banner wins", () => {
    const relay = new Relay();
    const v = threeNodes(relay);
    v.r.run.apply({ kind: "node_progress", run_id: "r", node: "b", value: 0, total: 1, text: "embedding 'ghost' not found" });
    v.r.draw();
    const b = v.scene.nodes.get("b")!;
    const banner = v.canvas.paints.filter((p) => p.op === "fillRect" && p.style === NOTE_COLOR);
    expect(banner.length).toBe(1);
    expect(banner[0].args.slice(0, 3)).toEqual([b.x, b.y + b.h, b.w]);
    v.canvas.paints.length = 0;
    v.r.run.apply({ kind: "node_failed", run_id: "r", node: "b", code: "VE-500", message: "boom" });
    v.r.draw();
    expect(v.canvas.paints.some((p) => p.style === NOTE_COLOR)).toBe(false);
  });
});
