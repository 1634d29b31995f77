import { describe, expect, it, vi } from "vitest";
import * as Y from "yjs";
import { GraphDoc } from "../src/docmodel";
import { Editor } from "../src/edit/editor";
import { Scene } from "../src/scene";
import { CommProvider } from "../src/sync";
import { SPECS } from "./helpers/fixtures";
import { Relay } from "./helpers/relay";

function user(relay: Relay) {
  const doc = new Y.Doc();
  new CommProvider(doc, relay.comm(), { onMessage: vi.fn() }).start();
  const g = new GraphDoc(doc, { user: doc.clientID });
  const scene = new Scene(g, SPECS);
  return { doc, g, scene, editor: new Editor(g, scene) };
}

describe("undo/redo per user", () => {
  it("undo reverts only this user's edits, never another user's", () => {
    const relay = new Relay();
    const a = user(relay), b = user(relay);
    const na = a.editor.addNode("Loader", 0, 0);
    const nb = b.editor.addNode("Blur", 300, 0);
    a.editor.undo.undo();
    expect(a.scene.nodes.has(na)).toBe(false);
    expect(a.scene.nodes.has(nb)).toBe(true);
    expect(b.scene.nodes.has(na)).toBe(false);
    expect(relay.doc.getMap("nodes").has(nb)).toBe(true);
    a.editor.undo.redo();
    expect(b.scene.nodes.has(na)).toBe(true);
  });

  it("a drag of many steps is one undo step", () => {
    const relay = new Relay();
    const a = user(relay);
    const id = a.editor.addNode("Loader", 0, 0);
    a.editor.undo.stopCapturing();
    for (let i = 1; i <= 20; i++) a.g.moveNodes([[id, i * 5, i * 2]]);
    a.editor.undo.stopCapturing();
    expect(a.scene.nodes.get(id)).toMatchObject({ x: 100, y: 40 });
    a.editor.undo.undo();
    expect(a.scene.nodes.get(id)).toMatchObject({ x: 0, y: 0 });
  });

  it("kernel edits are not on any view's undo stack", () => {
    const relay = new Relay();
    const a = user(relay);
    const id = a.editor.addNode("Loader", 0, 0);
    relay.edit((d) => ((d.getMap("nodes").get(id) as Y.Map<unknown>).get("params") as Y.Map<unknown>).set("path", "k.png"));
    a.editor.undo.stopCapturing();
    a.g.setParam(id, "path", "mine.png");
    a.editor.undo.undo();
    expect(a.scene.nodes.get(id)?.params.path).toBe("k.png");
  });
});

describe("editing commands", () => {
  it("connect refuses incompatible ports with the reason and adds compatible ones", () => {
    const relay = new Relay();
    const a = user(relay);
    const load = a.editor.addNode("Loader", 0, 0), blur = a.editor.addNode("Blur", 300, 0);
    const ks = a.editor.addNode("KSampler", 600, 0);
    const bad = a.editor.connect(load, 0, ks, "latent");
    expect(bad.ok).toBe(false);
    expect(bad.reason).toContain("IMAGE");
    expect(bad.reason).toContain("LATENT");
    expect(relay.doc.getMap("edges").size).toBe(0);
    expect(a.editor.connect(load, 0, blur, "image")).toEqual({ ok: true });
    expect(relay.doc.getMap("edges").get(`${blur}:image`)).toEqual({ src: load, src_output: 0, dst: blur, dst_input: "image" });
  });

  it("new nodes get the spec defaults (first choice for combos)", () => {
    const a = user(new Relay());
    const ks = a.editor.addNode("KSampler", 0, 0);
    expect(a.scene.nodes.get(ks)?.params).toEqual({ seed: 0, sampler: "euler" });
    expect(ks).toMatch(/^n[0-9a-z]{8}$/);
  });

  it("deleting a node removes its edges in the same transaction", () => {
    const a = user(new Relay());
    const load = a.editor.addNode("Loader", 0, 0), blur = a.editor.addNode("Blur", 300, 0);
    a.editor.connect(load, 0, blur, "image");
    a.editor.deleteNodes([load]);
    expect(a.scene.edges.size).toBe(0);
    a.editor.undo.undo();
    expect(a.scene.edges.size).toBe(1);
    expect(a.scene.nodes.has(load)).toBe(true);
  });

  it("copy/paste duplicates nodes and their inner edges with fresh ids", () => {
    const a = user(new Relay());
    const load = a.editor.addNode("Loader", 0, 0), blur = a.editor.addNode("Blur", 300, 0);
    a.editor.connect(load, 0, blur, "image");
    const text = a.editor.copy([load, blur]);
    const ids = a.editor.paste(text, 1000, 1000);
    expect(ids).toHaveLength(2);
    expect(a.scene.nodes.size).toBe(4);
    expect(a.scene.edges.size).toBe(2);
    const pasted = ids.map((id) => a.scene.nodes.get(id)!);
    expect(Math.min(...pasted.map((n) => n.x))).toBe(1000);
    const b = user(new Relay());
    expect(b.editor.paste(text, 0, 0)).toHaveLength(2); // across views: plain JSON text
  });

  it("groups frame the selection and move their members", () => {
    const a = user(new Relay());
    const load = a.editor.addNode("Loader", 0, 0), blur = a.editor.addNode("Blur", 300, 0);
    const gid = a.editor.groupNodes([load, blur])!;
    const g = a.scene.groups.get(gid)!;
    expect(g.x).toBeLessThan(0);
    expect(a.editor.groupMembers(gid).sort()).toEqual([load, blur].sort());
    const members = new Map<string, [number, number]>([[load, [0, 0]], [blur, [300, 0]]]);
    a.editor.moveGroup(gid, g.x + 50, g.y + 10, members, 50, 10);
    expect(a.scene.nodes.get(blur)).toMatchObject({ x: 350, y: 10 });
    expect(a.scene.groups.get(gid)).toMatchObject({ x: g.x + 50, y: g.y + 10 });
  });
});
