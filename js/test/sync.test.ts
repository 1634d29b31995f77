import { describe, expect, it, vi } from "vitest";
import * as Y from "yjs";
import { GraphDoc } from "../src/docmodel";
import { CommProvider } from "../src/sync";
import { Relay } from "./helpers/relay";

function view(relay: Relay, onMessage = vi.fn(), onError = vi.fn()) {
  const doc = new Y.Doc();
  const comm = relay.comm();
  const provider = new CommProvider(doc, comm, { onMessage, onError });
  const g = new GraphDoc(doc, { view: comm });
  provider.start();
  return { doc, comm, provider, g, onMessage, onError };
}

describe("sync over the widget comm", () => {
  it("sends hello then sync step 1 on start and becomes synced with the kernel state", () => {
    const relay = new Relay();
    relay.edit((d) => d.getMap("meta").set("schema", 1));
    const a = view(relay);
    expect(a.comm.sent[0].content).toEqual({ t: "hello" });
    expect(a.comm.sent[1].content).toEqual({ t: "y" });
    expect(a.comm.sent[1].bytes![0]).toBe(0); // y-websocket sync frame
    expect(a.provider.synced).toBe(true);
    expect(a.doc.getMap("meta").get("schema")).toBe(1);
  });

  it("two views converge on each other's edits through the kernel relay", () => {
    const relay = new Relay();
    const a = view(relay), b = view(relay);
    a.g.addNode({ id: "n1", type: "Loader", x: 1, y: 2, params: { path: "x.png" } });
    b.g.addNode({ id: "n2", type: "Blur", x: 5, y: 6, params: { radius: 3 } });
    b.g.connect({ src: "n1", src_output: 0, dst: "n2", dst_input: "image" });
    a.g.moveNodes([["n2", 50, 60]]);
    for (const d of [a.doc, b.doc, relay.doc]) {
      expect([...d.getMap("nodes").keys()].sort()).toEqual(["n1", "n2"]);
      expect((d.getMap("nodes").get("n2") as Y.Map<unknown>).get("x")).toBe(50);
      expect(d.getMap("edges").get("n2:image")).toEqual({ src: "n1", src_output: 0, dst: "n2", dst_input: "image" });
    }
  });

  it("kernel edits (Python side) appear in every view", () => {
    const relay = new Relay();
    const a = view(relay), b = view(relay);
    relay.edit((d) => {
      const m = new Y.Map<unknown>();
      m.set("type", "Loader"); m.set("x", 0); m.set("y", 0); m.set("params", new Y.Map());
      d.getMap("nodes").set("k1", m);
    });
    expect(a.g.readNode("k1")?.type).toBe("Loader");
    expect(b.g.readNode("k1")?.type).toBe("Loader");
  });

  it("does not echo remote updates back to the kernel", () => {
    const relay = new Relay();
    const a = view(relay), b = view(relay);
    const before = b.comm.sent.length;
    a.g.addNode({ id: "n1", type: "Loader", x: 0, y: 0, params: {} });
    expect(b.doc.getMap("nodes").has("n1")).toBe(true);
    expect(b.comm.sent.length).toBe(before);
  });

  it("on a kernel error it reports the message and resyncs with step 1", () => {
    const relay = new Relay();
    const a = view(relay);
    relay.rejectNext = true;
    a.g.addNode({ id: "bad", type: "Loader", x: 0, y: 0, params: {} });
    expect(relay.doc.getMap("nodes").has("bad")).toBe(false);
    expect(a.onMessage).toHaveBeenCalledWith(expect.objectContaining({ t: "error", code: "VE-600" }), []);
    const last = a.comm.sent[a.comm.sent.length - 1];
    expect(last.content).toEqual({ t: "y" });
    expect(last.bytes![1]).toBe(0); // sync step 1
  });

  it("survives a malformed buffer from the kernel and reports it", () => {
    const relay = new Relay();
    const a = view(relay);
    a.comm.deliver({ t: "y" }, new Uint8Array([0, 9, 0])); // unknown sync message type
    a.comm.deliver({ t: "y" }, new Uint8Array([0, 2])); // update without its payload
    expect(a.onError).toHaveBeenCalledTimes(2);
    a.g.addNode({ id: "ok", type: "Loader", x: 0, y: 0, params: {} });
    expect(relay.doc.getMap("nodes").has("ok")).toBe(true);
  });

  it("passes non-sync kernel messages to the view", () => {
    const relay = new Relay();
    const a = view(relay);
    a.comm.deliver({ t: "state", running: true });
    expect(a.onMessage).toHaveBeenCalledWith({ t: "state", running: true }, []);
  });

  it("shares awareness (selections) between views", () => {
    const relay = new Relay();
    const a = view(relay), b = view(relay);
    a.provider.awareness!.setLocalStateField("selection", ["n1"]);
    const seen = b.provider.awareness!.getStates().get(a.doc.clientID) as { selection?: string[] };
    expect(seen?.selection).toEqual(["n1"]);
  });

  it("destroy detaches from the comm", () => {
    const relay = new Relay();
    const a = view(relay);
    expect(a.comm.listeners("msg:custom")).toBe(1);
    a.provider.destroy();
    expect(a.comm.listeners("msg:custom")).toBe(0);
  });
});
