import { describe, expect, it, vi } from "vitest";
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { GraphDoc } from "../src/docmodel";
import { FINAL_CLOSE_CODES, retryDelay, roomUrl, SocketModel, type SocketLike } from "../src/socket";
import { pageHref } from "../src/standalone";
import { CommProvider } from "../src/sync";
import { frame } from "./helpers/relay";

/** A WebSocket stand-in: what the page sent, and hooks to play the server's part. */
class FakeSocket implements SocketLike {
  binaryType = "blob";
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  readonly sent: Array<string | Uint8Array> = [];
  constructor(readonly url: string, private room?: FakeRoom) {}
  send(data: string | Uint8Array): void {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(typeof data === "string" ? data : data.slice());
    this.room?.receive(this, data);
  }
  close(code = 1000, reason = ""): void { this.drop(code, reason); }
  open(): void { this.readyState = 1; this.onopen?.({}); this.room?.join(this); }
  deliver(data: string | Uint8Array): void {
    this.onmessage?.({ data: typeof data === "string" ? data : data.slice().buffer });
  }
  drop(code: number, reason = ""): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.room?.leave(this);
    this.onclose?.({ code, reason });
  }
}

/** The server's part of `rooms.py`: step 1 + step 2 on joining, step 2 for a step 1, updates relayed. */
class FakeRoom {
  readonly doc = new Y.Doc();
  readonly sockets = new Set<FakeSocket>();
  join(s: FakeSocket): void {
    this.sockets.add(s);
    s.deliver(frame((e) => syncProtocol.writeSyncStep1(e, this.doc)));
    s.deliver(frame((e) => syncProtocol.writeSyncStep2(e, this.doc)));
  }
  leave(s: FakeSocket): void { this.sockets.delete(s); }
  receive(from: FakeSocket, data: string | Uint8Array): void {
    if (typeof data === "string") {
      if (JSON.parse(data).t === "hello") from.deliver(JSON.stringify({ t: "specs", specs: { Blur: { type: "Blur", inputs: [], outputs: [] } } }));
      return;
    }
    const dec = decoding.createDecoder(data);
    if (decoding.readVarUint(dec) !== 0) return;
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, 0);
    const onUpdate = (u: Uint8Array): void => {
      const msg = frame((e) => syncProtocol.writeUpdate(e, u));
      for (const s of this.sockets) if (s !== from) s.deliver(msg);
    };
    this.doc.on("update", onUpdate);
    syncProtocol.readSyncMessage(dec, enc, this.doc, from);
    this.doc.off("update", onUpdate);
    if (encoding.length(enc) > 1) from.deliver(encoding.toUint8Array(enc));
  }
}

function connectTo(room: FakeRoom | undefined, sockets: FakeSocket[]) {
  return (url: string): SocketLike => {
    const s = new FakeSocket(url, room);
    sockets.push(s);
    return s;
  };
}

function view(room: FakeRoom) {
  const sockets: FakeSocket[] = [];
  const timers: Array<() => void> = [];
  const model = new SocketModel("ws://h/api/v1/graphs/g/room", { connect: connectTo(room, sockets), later: (fn) => timers.push(fn) });
  const doc = new Y.Doc();
  const provider = new CommProvider(doc, model, { onMessage: vi.fn() });
  provider.start();
  sockets[0].open();
  return { model, doc, provider, g: new GraphDoc(doc, { view: model }), sockets, timers };
}

describe("the room's URL and the page's links", () => {
  it("turns the page's http(s) URL into the room's ws(s) URL, under the page's path, with the token", () => {
    expect(roomUrl("http://h:8188/?graph=abc", "abc", null)).toBe("ws://h:8188/api/v1/graphs/abc/room");
    expect(roomUrl("https://h/vortex/?graph=a%20b&token=t", "a b", "t&u")).toBe("wss://h/vortex/api/v1/graphs/a%20b/room?token=t%26u");
  });

  it("links to a document and back to the list, keeping the token", () => {
    expect(pageHref("http://h/?token=x", "doc1", "x")).toBe("http://h/?graph=doc1&token=x");
    expect(pageHref("http://h/?graph=doc1#frag", null, null)).toBe("http://h/");
  });
});

describe("SocketModel: the widget-model seam over a room's WebSocket", () => {
  it("says hello on opening and makes the room's specs its specs attribute", () => {
    const room = new FakeRoom();
    const onSpecs = vi.fn();
    const sockets: FakeSocket[] = [];
    const model = new SocketModel("ws://h/r", { connect: connectTo(room, sockets) });
    model.on("change:specs", onSpecs);
    expect(sockets[0].binaryType).toBe("arraybuffer");
    sockets[0].open();
    expect(sockets[0].sent[0]).toBe('{"t":"hello"}');
    expect(onSpecs).toHaveBeenCalledOnce();
    expect(Object.keys(model.get("specs") as object)).toEqual(["Blur"]);
  });

  it("hands binary frames over as y messages and text frames as messages", () => {
    const sockets: FakeSocket[] = [];
    const model = new SocketModel("ws://h/r", { connect: connectTo(undefined, sockets) });
    const got = vi.fn();
    model.on("msg:custom", got);
    sockets[0].open();
    sockets[0].deliver(new Uint8Array([0, 1, 0]));
    sockets[0].deliver(JSON.stringify({ t: "error", code: "VE-600", message: "no" }));
    sockets[0].deliver("not json");
    expect(got).toHaveBeenCalledTimes(2);
    expect(got.mock.calls[0][0]).toEqual({ t: "y" });
    expect([...got.mock.calls[0][1][0]]).toEqual([0, 1, 0]);
    expect(got.mock.calls[1][0]).toMatchObject({ t: "error", code: "VE-600" });
  });

  it("takes the binary frames after a message with buffers as its buffers, not as y frames", () => {
    const sockets: FakeSocket[] = [];
    const model = new SocketModel("ws://h/r", { connect: connectTo(undefined, sockets), later: (fn) => fn() });
    const got = vi.fn();
    model.on("msg:custom", got);
    sockets[0].open();
    sockets[0].deliver(JSON.stringify({ t: "gallery_items", items: [], buffers: 2 }));
    sockets[0].deliver(new Uint8Array([1, 2]));
    expect(got).not.toHaveBeenCalled(); // the message waits for all its buffers
    sockets[0].deliver(new Uint8Array([3]));
    sockets[0].deliver(new Uint8Array([0, 1, 0])); // then frames are y frames again
    expect(got).toHaveBeenCalledTimes(2);
    expect(got.mock.calls[0][0]).toEqual({ t: "gallery_items", items: [] });
    expect(got.mock.calls[0][1].map((b: Uint8Array) => [...b])).toEqual([[1, 2], [3]]);
    expect(got.mock.calls[1][0]).toEqual({ t: "y" });
    sockets[0].deliver(JSON.stringify({ t: "image", node: "n", final: true, mime: "image/png", buffers: 1 }));
    sockets[0].drop(1006); // a reconnect forgets a message whose buffers never came
    sockets[1].open();
    sockets[1].deliver(new Uint8Array([0, 1, 0]));
    expect(got).toHaveBeenCalledTimes(3);
    expect(got.mock.calls[2][0]).toEqual({ t: "y" });
  });

  it("sends y buffers as binary frames, other messages as JSON, and drops what it cannot send", () => {
    const sockets: FakeSocket[] = [];
    const model = new SocketModel("ws://h/r", { connect: connectTo(undefined, sockets) });
    model.send({ t: "y" }, undefined, [new Uint8Array([9])]); // not open yet: dropped
    sockets[0].open();
    model.send({ t: "y" }, undefined, [new DataView(new Uint8Array([0, 2]).buffer)]);
    model.send({ t: "run", outputs: null });
    model.send({ t: "hello" }); // said once per connection by the model itself
    expect(sockets[0].sent).toEqual(['{"t":"hello"}', new Uint8Array([0, 2]), '{"t":"run","outputs":null}']);
  });

  it("reconnects with backoff after a lost connection, and not after a final close", () => {
    const sockets: FakeSocket[] = [];
    const delays: number[] = [];
    const statuses: string[] = [];
    const model = new SocketModel("ws://h/r", {
      connect: connectTo(undefined, sockets), later: (fn, ms) => { delays.push(ms); fn(); },
      onStatus: (s) => statuses.push(s),
    });
    sockets[0].drop(1006);
    sockets[1].drop(1006);
    expect(delays).toEqual([500, 1000]);
    sockets[2].open();
    sockets[2].drop(1012);
    expect(delays[2]).toBe(500); // an open connection resets the backoff
    sockets[3].drop(4404, "the graph document was deleted");
    expect(sockets).toHaveLength(4);
    expect(model.status).toBe("closed");
    expect(statuses.at(-1)).toBe("closed");
    expect(FINAL_CLOSE_CODES.has(4401)).toBe(true);
    expect(retryDelay(30, 500, 10_000)).toBe(10_000);
  });
});

describe("the canvas's sync provider over SocketModel", () => {
  it("two pages converge through the room", () => {
    const room = new FakeRoom();
    room.doc.getMap("meta").set("schema", 1);
    const a = view(room), b = view(room);
    expect(a.provider.synced && b.provider.synced).toBe(true);
    expect(a.doc.getMap("meta").get("schema")).toBe(1);
    a.g.addNode({ id: "n1", type: "Blur", x: 1, y: 2, params: { radius: 3 } });
    b.g.setParam("n1", "radius", 7);
    for (const d of [a.doc, b.doc, room.doc]) {
      expect(((d.getMap("nodes").get("n1") as Y.Map<unknown>).get("params") as Y.Map<unknown>).get("radius")).toBe(7);
    }
  });

  it("edits made while disconnected reach the room when the page reconnects", () => {
    const room = new FakeRoom();
    const a = view(room);
    a.sockets[0].drop(1006);
    a.g.addNode({ id: "offline", type: "Blur", x: 0, y: 0, params: {} });
    expect(room.doc.getMap("nodes").has("offline")).toBe(false);
    a.timers.shift()!();
    a.sockets[1].open();
    expect(room.doc.getMap("nodes").has("offline")).toBe(true);
  });
});
