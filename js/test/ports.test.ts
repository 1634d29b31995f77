import { describe, expect, it } from "vitest";
import { compatible, isWidget, whyIncompatible } from "../src/ports";

describe("port type compatibility (same rule as graph/ports.py)", () => {
  it.each([
    ["INT", "INT", true], ["*", "IMAGE", true], ["IMAGE", "*", true], ["INT", "INT,FLOAT", true],
    ["INT,FLOAT", "FLOAT", true], ["FLOAT, INT", "INT", true], ["IMAGE", "LATENT", false],
    ["INT,FLOAT", "STRING,IMAGE", false], ["image", "IMAGE", false],
  ])("compatible(%s, %s) is %s", (src, dst, ok) => {
    expect(compatible(src, dst)).toBe(ok);
  });

  it("explains a refused link naming both ports, both types and the fix", () => {
    const why = whyIncompatible("load", "IMAGE", "IMAGE", "ks", "latent", "LATENT");
    expect(why).toContain("load.IMAGE gives IMAGE");
    expect(why).toContain("ks.latent takes LATENT");
    expect(why).toContain("connect an output of type LATENT");
    expect(whyIncompatible("a", "o", "INT", "b", "i", "INT,FLOAT")).toBeNull();
  });

  it("refuses linking a node to itself", () => {
    expect(whyIncompatible("a", "o", "*", "a", "i", "*")).toMatch(/itself/);
  });

  it("treats widget types as widgets unless forceInput", () => {
    expect(isWidget({ name: "s", type: "INT" })).toBe(true);
    expect(isWidget({ name: "s", type: "INT", forceInput: true })).toBe(false);
    expect(isWidget({ name: "i", type: "IMAGE" })).toBe(false);
    expect(isWidget({ name: "i", type: "IMAGE", widget: true })).toBe(true);
  });
});
