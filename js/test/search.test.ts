import { describe, expect, it } from "vitest";
import { NODE_GROUP, grouped, nodeItems, search, specItems } from "../src/ui/search";
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

describe("the command palette's search (commands and node types)", () => {
  const items = [...commandItems(), ...nodeItems(SPECS)];

  it("lists node types too, after the commands when the query is empty", () => {
    const all = search(items, "");
    const kinds = all.map((i) => i.kind);
    expect(kinds).toContain("node");
    expect(kinds.indexOf("node")).toBe(commandItems().length); // every command, then the nodes
    expect(all.filter((i) => i.kind === "node").map((i) => i.id).sort()).toEqual(["Blur", "KSampler", "Loader"]);
  });

  it("finds a node type by name, type id or category, under an 'add node' group", () => {
    expect(search(items, "ksampler")[0]).toMatchObject({ id: "KSampler", kind: "node", group: NODE_GROUP });
    expect(search(items, "sampling").map((i) => i.id)).toContain("KSampler");
  });

  it("ranks a better match first, whichever kind it is; a command first on equal matches", () => {
    expect(search(items, "blur")[0].id).toBe("Blur"); // a node's name prefix beats commands
    expect(search(items, "undo")[0].id).toBe("undo");
    const tie = [
      { id: "Fit", label: "Fit", group: NODE_GROUP, kind: "node" as const },
      ...commandItems().filter((c) => c.id === "fit").map((c) => ({ ...c, label: "Fit" })),
    ];
    expect(search(tie, "fit").map((i) => i.kind)).toEqual(["command", "node"]);
  });

  it("matches nothing for a query nothing has", () => {
    expect(search(items, "zzzqq")).toEqual([]);
  });
});
