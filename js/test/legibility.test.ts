import { describe, expect, it } from "vitest";
import { clipText, nodeErrorText, widgetText, wrapText } from "../src/render/text";

const mono = (t: string): number => t.length * 6; // 6 px per character

describe("failure text on a node", () => {
  const msg = "VE-500: node '1' (boom) raised ValueError: boom: x=3 is not allowed";

  it("drops the node preamble so the cause fits (the node itself is the one drawn)", () => {
    expect(nodeErrorText(msg)).toBe("VE-500: raised ValueError: boom: x=3 is not allowed");
    expect(nodeErrorText("VE-505: node '2' did not run")).toBe("VE-505: did not run");
    expect(nodeErrorText("plain message")).toBe("plain message");
  });

  it("wraps onto several lines and keeps the cause readable instead of one clipped line", () => {
    const lines = wrapText(nodeErrorText(msg), 172, mono, 3);
    expect(lines.length).toBe(2);
    expect(lines.join(" ")).toBe("VE-500: raised ValueError: boom: x=3 is not allowed");
    for (const l of lines) expect(mono(l)).toBeLessThanOrEqual(172);
  });

  it("clips the last line with an ellipsis when the text needs more lines than allowed", () => {
    const lines = wrapText("aaaa bbbb cccc dddd eeee ffff", 60, mono, 2);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe("aaaa bbbb");
    expect(lines[1].endsWith("…")).toBe(true);
    expect(mono(lines[1])).toBeLessThanOrEqual(60);
  });

  it("clips a single word longer than a line", () => {
    expect(wrapText("x".repeat(50), 60, mono, 3)).toEqual([clipText("x".repeat(50), 60, mono)]);
    expect(mono(clipText("x".repeat(50), 60, mono))).toBeLessThanOrEqual(60);
  });
});

describe("widget row text", () => {
  it("shows an unset param's spec default, dimmed, instead of a dash", () => {
    expect(widgetText(undefined, false, 0)).toEqual({ text: "0", dim: true });
    expect(widgetText(undefined, false, false)).toEqual({ text: "false", dim: true });
    expect(widgetText(undefined, false, undefined)).toEqual({ text: "—", dim: true });
  });

  it("shows set values plainly, links as linked, and flattens multiline text", () => {
    expect(widgetText(5, false, 0)).toEqual({ text: "5", dim: false });
    expect(widgetText(true, false, false)).toEqual({ text: "true", dim: false });
    expect(widgetText("a\n b", false, "")).toEqual({ text: "a b", dim: false });
    expect(widgetText(5, true, 0)).toEqual({ text: "(linked)", dim: false });
  });
});

describe("node width", () => {
  it("grows to show a long type title in full, within a cap", async () => {
    const { MIN_W, MAX_AUTO_W, layoutNode, titleWidth } = await import("../src/render/layout");
    const spec = { type: "CLIPTextEncode", display_name: "CLIP Text Encode (Prompt)", category: "conditioning",
      inputs: [], outputs: [] };
    const n = layoutNode({ id: "6", type: "CLIPTextEncode", x: 0, y: 0 }, spec as never, false, {});
    expect(n.w).toBe(titleWidth("CLIP Text Encode (Prompt)"));
    expect(n.w).toBeGreaterThan(MIN_W);
    const short = layoutNode({ id: "1", type: "IntAdd", x: 0, y: 0 }, { ...spec, display_name: "IntAdd" } as never, false, {});
    expect(short.w).toBe(MIN_W);
    expect(titleWidth("x".repeat(200))).toBe(MAX_AUTO_W);
  });
});

describe("toolbar", () => {
  it("labels the command palette with the platform's key", async () => {
    const { commandsLabel } = await import("../src/ui/toolbar");
    expect(commandsLabel("Linux x86_64")[0]).toBe("Ctrl+K");
    expect(commandsLabel("Win32")[0]).toBe("Ctrl+K");
    expect(commandsLabel("MacIntel")[0]).toBe("⌘K");
  });
});
