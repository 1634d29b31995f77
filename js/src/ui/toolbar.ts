/**
 * The toolbar over the canvas: Run, Queue (with the pending count), Cancel, add node, fit,
 * undo/redo, group, commands, the History panel's toggle, and a status text. Buttons carry
 * `data-action` so tests and people find them by role and name.
 */
import { queueLabel } from "../history";

export interface ToolbarActions {
  run(): void;
  queue(): void;
  cancel(): void;
  add(): void;
  fit(): void;
  undo(): void;
  redo(): void;
  group(): void;
  commands(): void;
  history(): void;
}

const BUTTONS: Array<[keyof ToolbarActions, string, string]> = [
  ["run", "▶ Run", "Run the graph"],
  ["queue", queueLabel(0), "Queue the graph as it is now (queued runs go one at a time, in order)"],
  ["cancel", "■ Cancel", "Cancel the run"],
  ["add", "+ Node", "Add a node (double-click the canvas)"],
  ["fit", "Fit", "Fit the graph in view (F)"],
  ["undo", "Undo", "Undo (Ctrl+Z)"],
  ["redo", "Redo", "Redo (Ctrl+Shift+Z)"],
  ["group", "Group", "Group the selected nodes (Ctrl+G)"],
  ["commands", "⌘K", "Command palette (Ctrl+K)"],
  ["history", "History", "Run history, gallery and queue"],
];

/** "⌘K" means nothing off a Mac: name the key the platform actually uses. */
export function commandsLabel(platform: string): [label: string, title: string] {
  return /mac|iphone|ipad/i.test(platform) ? ["⌘K", "Command palette (⌘K)"] : ["Ctrl+K", "Command palette (Ctrl+K)"];
}

export class Toolbar {
  readonly el: HTMLDivElement;
  readonly status: HTMLSpanElement;
  /** Badges of the other people on this graph, in their colours. */
  readonly users: HTMLSpanElement;
  private buttons = new Map<string, HTMLButtonElement>();

  constructor(parent: HTMLElement, actions: ToolbarActions) {
    this.el = document.createElement("div");
    this.el.className = "vx-toolbar";
    this.el.setAttribute("role", "toolbar");
    const platform = typeof navigator === "undefined" ? "" : navigator.platform || navigator.userAgent;
    for (const [name, plainLabel, plainTitle] of BUTTONS) {
      const [label, title] = name === "commands" ? commandsLabel(platform) : [plainLabel, plainTitle];
      const b = document.createElement("button");
      b.type = "button";
      b.className = `vx-btn vx-btn-${name}`;
      b.dataset.action = name;
      b.textContent = label;
      b.title = title;
      b.setAttribute("aria-label", title);
      b.addEventListener("click", () => actions[name]());
      this.buttons.set(name, b);
      this.el.appendChild(b);
    }
    this.status = document.createElement("span");
    this.status.className = "vx-status";
    this.status.setAttribute("aria-live", "polite");
    this.el.appendChild(this.status);
    this.users = document.createElement("span");
    this.users.className = "vx-users";
    this.users.setAttribute("aria-label", "others on this graph");
    this.el.appendChild(this.users);
    parent.appendChild(this.el);
    this.setRunning(false);
    this.setHistoryOpen(false);
  }

  setRunning(running: boolean): void {
    (this.buttons.get("run") as HTMLButtonElement).disabled = running;
    (this.buttons.get("cancel") as HTMLButtonElement).disabled = !running;
    this.el.dataset.running = String(running);
  }

  /** The Queue button shows how many queued runs are pending. */
  setQueued(pending: number): void {
    const b = this.buttons.get("queue") as HTMLButtonElement;
    b.textContent = queueLabel(pending);
    b.dataset.pending = String(pending);
  }

  /** The History button shows whether its panel is open. */
  setHistoryOpen(open: boolean): void {
    (this.buttons.get("history") as HTMLButtonElement).setAttribute("aria-pressed", String(open));
  }

  setStatus(text: string): void {
    this.status.textContent = text;
  }

  setUsers(users: ReadonlyArray<{ name: string; initials: string; color: string }>): void {
    this.users.replaceChildren(...users.map((u) => {
      const b = document.createElement("span");
      b.className = "vx-user";
      b.textContent = u.initials;
      b.title = u.name;
      b.style.background = u.color;
      b.setAttribute("role", "img");
      b.setAttribute("aria-label", u.name);
      return b;
    }));
  }
}
