/**
 * A faster lib0 `readVarString` for the short ASCII strings yjs reads by the thousand (map
 * keys, node ids). lib0 calls TextDecoder for every string; in Chromium that was about a
 * quarter of applying a 10,000-node graph on first sync. build.mjs swaps this in for lib0's
 * export at bundle time; anything longer or non-ASCII still goes through `slow`.
 */
export interface Lib0Decoder { arr: Uint8Array; pos: number }

export function makeReadVarString(
  readVarUint: (d: Lib0Decoder) => number,
  slow: (d: Lib0Decoder) => string,
): (d: Lib0Decoder) => string {
  return (decoder) => {
    const start = decoder.pos;
    const len = readVarUint(decoder);
    if (len > 32) {
      decoder.pos = start;
      return slow(decoder);
    }
    const arr = decoder.arr, end = decoder.pos + len;
    if (end > arr.length) throw new Error("Unexpected end of array");
    let s = "";
    for (let i = decoder.pos; i < end; i++) {
      const c = arr[i];
      if (c > 0x7f) {
        decoder.pos = start;
        return slow(decoder);
      }
      s += String.fromCharCode(c);
    }
    decoder.pos = end;
    return s;
  };
}
