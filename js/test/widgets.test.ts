import { describe, expect, it } from "vitest";
import { parseNumber, randomSeed, widgetKind } from "../src/ui/widgets";

describe("param widgets", () => {
  it("chooses the editor from the spec", () => {
    expect(widgetKind({ name: "s", type: "COMBO", choices: ["a"] })).toBe("combo");
    expect(widgetKind({ name: "b", type: "BOOLEAN" })).toBe("toggle");
    expect(widgetKind({ name: "t", type: "STRING", multiline: true })).toBe("multiline");
    expect(widgetKind({ name: "t", type: "STRING" })).toBe("text");
    expect(widgetKind({ name: "seed", type: "INT", control_after_generate: true })).toBe("seed");
    expect(widgetKind({ name: "cfg", type: "FLOAT", display: "slider" })).toBe("slider");
    expect(widgetKind({ name: "steps", type: "INT" })).toBe("number");
  });

  it("parses numbers: clamps to the range, rounds INTs, rejects junk", () => {
    const steps = { name: "steps", type: "INT", min: 1, max: 100 };
    expect(parseNumber(steps, "12.6")).toBe(13);
    expect(parseNumber(steps, "500")).toBe(100);
    expect(parseNumber(steps, "0")).toBe(1);
    expect(parseNumber(steps, "abc")).toBeNull();
    expect(parseNumber({ name: "cfg", type: "FLOAT" }, "7.25")).toBe(7.25);
  });

  it("keeps INTs beyond 2^53 exact as decimal strings (docs/canvas-protocol.md)", () => {
    expect(parseNumber({ name: "seed", type: "INT" }, "18446744073709551615")).toBe("18446744073709551615");
  });

  it("randomizes seeds within the range, as strings when beyond 2^53", () => {
    const small = randomSeed({ name: "seed", type: "INT", max: 1000 }, () => 0.999);
    expect(small).toBe(999);
    const big = randomSeed({ name: "seed", type: "INT", max: 0xffffffffffffffff }, () => 0.9);
    expect(typeof big).toBe("string");
    expect(BigInt(big as string) <= 0xffffffffffffffffn).toBe(true);
  });
});
