import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import { describe, expect, it } from "vitest";
import * as Y from "yjs";
import { makeReadVarString } from "../src/faststrings";

const fast = makeReadVarString(decoding.readVarUint as never, decoding.readVarString as never);

function roundTrip(strings: string[]): string[] {
  const enc = encoding.createEncoder();
  for (const s of strings) encoding.writeVarString(enc, s);
  const dec = decoding.createDecoder(encoding.toUint8Array(enc));
  return strings.map(() => fast(dec as never));
}

describe("fast short-string decoding (swapped into lib0 by build.mjs)", () => {
  it("reads the same strings as lib0: empty, ASCII, non-ASCII, long", () => {
    const strings = ["", "x", "params", "n0a1b2c3d", "é", "naïve", "🎲 seed", "a".repeat(32), "b".repeat(33), "long ".repeat(100)];
    expect(roundTrip(strings)).toEqual(strings);
  });

  it("throws on a truncated buffer instead of reading past the end", () => {
    const dec = decoding.createDecoder(new Uint8Array([5, 65, 66]));
    expect(() => fast(dec as never)).toThrow();
  });

  it("decodes a real yjs update the same way", () => {
    const doc = new Y.Doc();
    doc.getMap("nodes").set("n1", "KSampler");
    const bytes = Y.encodeStateAsUpdate(doc);
    const copy = new Y.Doc();
    Y.applyUpdate(copy, bytes);
    expect(copy.getMap("nodes").get("n1")).toBe("KSampler");
  });
});
