import { describe, expect, it } from "vitest";
import { grouped, search, specItems } from "../src/ui/search";
import { commandItems } from "../src/commands";
import { SPECS } from "./helpers/fixtures";

describe("palette search", () => {
  const items = specItems(SPECS);

  it("lists every node type with its category when the query is empty", () => {
    expect(search(items, "").map((i) => i.id).sort()).toEqual(["Blur", "KSampler", "Loader"]);
    expect([...grouped(search(items, "")).keys()].sort()).toEqual(["image", "image/filters", "sampling"]);
  });

  it("ranks a name prefix above a substring and a subsequence", () => {
    const all = [
      { id: "a", label: "Image Blur", group: "x" },
      { id: "b", label: "Blur", group: "x" },
      { id: "c", label: "Bilateral LUR", group: "x" },
    ];
    expect(search(all, "blur").map((i) => i.id)).toEqual(["b", "a", "c"]); // c only as a subsequence
    expect(search(all, "blr").map((i) => i.id)).toContain("c");
  });

  it("finds by type id and category, and drops non-matches", () => {
    expect(search(items, "sampling").map((i) => i.id)).toEqual(["KSampler"]);
    expect(search(items, "ksa")[0].id).toBe("KSampler");
    expect(search(items, "zzz")).toEqual([]);
  });

  it("command palette has run, undo and fit", () => {
    const ids = search(commandItems(), "").map((c) => c.id);
    expect(ids).toEqual(expect.arrayContaining(["run", "cancel", "undo", "redo", "fit", "group", "delete"]));
    expect(search(commandItems(), "fit")[0].id).toBe("fit");
  });
});
