/**
 * The command palette's commands (Ctrl/Cmd+K or Ctrl+Shift+P): each has an id, a label,
 * a group and an action on the view. The palette also lists the node types
 * (`ui/search.ts` `nodeItems`); picking one adds it at the view centre.
 */
import type { Host } from "./edit/host";
import { toggleMode } from "./edit/keys";
import { MODE_BYPASSED, MODE_MUTED } from "./protocol";
import { COMMAND_BOOST, type PaletteItem } from "./ui/search";

interface Command { id: string; label: string; group: string; detail?: string; run(h: Host): void }

const COMMANDS: Command[] = [
  { id: "run", label: "Run graph", group: "run", run: (a) => a.send({ t: "run", outputs: null }) },
  { id: "run-selected", label: "Run selected nodes", group: "run",
    run: (a) => a.send({ t: "run", outputs: [...a.r.selected] }) },
  { id: "cancel", label: "Cancel run", group: "run", run: (a) => a.send({ t: "cancel" }) },
  { id: "add", label: "Add node…", group: "edit", run: (a) => a.openAddPalette(a.r.width / 2 - 150, 40) },
  { id: "delete", label: "Delete selected", group: "edit",
    run: (a) => { a.editor.deleteNodes([...a.r.selected]); a.setSelection([]); } },
  { id: "copy", label: "Copy", group: "edit", run: (a) => a.copy() },
  { id: "paste", label: "Paste", group: "edit", run: (a) => a.paste() },
  { id: "undo", label: "Undo", group: "edit", run: (a) => a.editor.undo.undo() },
  { id: "redo", label: "Redo", group: "edit", run: (a) => a.editor.undo.redo() },
  { id: "group", label: "Group selected nodes", group: "edit", run: (a) => a.group() },
  { id: "rename-group", label: "Rename group", group: "edit", run: renameGroup },
  { id: "ungroup", label: "Remove groups around the selection", group: "edit", run: (a) => a.ungroup() },
  { id: "mute", label: "Mute / unmute selected", group: "edit", detail: "Ctrl+M",
    run: (a) => toggleMode(a, MODE_MUTED) },
  { id: "bypass", label: "Bypass / unbypass selected", group: "edit", detail: "Ctrl+B",
    run: (a) => toggleMode(a, MODE_BYPASSED) },
  { id: "select-all", label: "Select all", group: "edit", run: (a) => a.setSelection(a.scene.nodes.keys()) },
  { id: "fit", label: "Fit to view", group: "view", run: (a) => a.fit() },
  { id: "zoom-100", label: "Zoom to 100%", group: "view",
    run: (a) => a.r.setView({ ...a.r.view, zoom: 1 }) },
];

/** Renames the innermost group around the selection. */
function renameGroup(a: Host): void {
  const id = a.editor.groupAround(a.r.selected);
  if (id) a.editGroupTitle(id);
  else a.toast("Select a node inside a group to rename the group", "info");
}

export function commandItems(): PaletteItem[] {
  return COMMANDS.map((c) => ({
    id: c.id, label: c.label, group: c.group, detail: c.detail, kind: "command" as const, boost: COMMAND_BOOST,
  }));
}

export function runCommand(h: Host, id: string): void {
  COMMANDS.find((c) => c.id === id)?.run(h);
}
