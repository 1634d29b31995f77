/**
 * Presence: who else is on this graph and what they are doing, over Yjs awareness.
 *
 * Each view publishes, beside its `user` (name and colour: JupyterLab's identity from the
 * server; the collaborative drive publishes it for documents under real-time collaboration),
 * a `vx` field: its pointer in graph units, its selection and the widget it is editing.
 * Other views draw those in the user's colour: a labelled cursor, an outline around the
 * nodes they selected, a tag on the widget they edit. The channel is the document's room
 * (collaboration) or the kernel comm (notebook canvases: the kernel relays awareness).
 *
 * Pointer moves are published at most every `CURSOR_MS` (awareness updates are broadcast).
 */
import type { Awareness } from "y-protocols/awareness";
import type { Renderer } from "./render/renderer";

const COLORS = ["#ef5350", "#ab47bc", "#42a5f5", "#26a69a", "#ffa726", "#8d6e63"];
export const CURSOR_MS = 40;

/** The identity shown to others (JupyterLab's `User.IIdentity` has these fields). */
export interface UserIdentity {
  name: string;
  display_name?: string;
  initials?: string;
  color: string;
  username?: string;
}

/** Another view's presence, as this view sees it. */
export interface RemoteUser {
  client: number;
  name: string;
  initials: string;
  color: string;
  cursor: [number, number] | null;
  selection: string[];
  editing: { node: string; param: string } | null;
}

interface VxState {
  cursor?: unknown;
  selection?: unknown;
  editing?: unknown;
}

export class Presence {
  readonly color: string;
  readonly name: string;
  private last = 0;
  private pending: [number, number] | null | undefined;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private listeners = new Set<(users: RemoteUser[]) => void>();
  private readonly onChange: (change?: { added?: number[] }) => void;
  private vx: { cursor: [number, number] | null; selection: string[]; editing: { node: string; param: string } | null } =
    { cursor: null, selection: [], editing: null };

  /**
   * `user`: this view's identity to publish; `null` when the channel already publishes one
   * (a collaborative document's provider sets `user` from the server's identity).
   */
  constructor(private awareness: Awareness, private r: Renderer, user: UserIdentity | null = null) {
    const own = awareness.getLocalState()?.user as UserIdentity | undefined;
    const me = user ?? own ?? anonymous(awareness.clientID);
    this.color = cssColor(me.color) || COLORS[awareness.clientID % COLORS.length];
    this.name = me.display_name || me.name;
    if (user || !own) awareness.setLocalStateField("user", me);
    awareness.setLocalStateField("vx", this.vx);
    this.onChange = (change?: { added?: number[] }) => {
      // A newcomer learns about the others only when they next publish (the Jupyter room
      // relays awareness but does not hand a new client the states it has): say hello.
      if (change?.added?.some((c) => c !== awareness.clientID)) awareness.setLocalState({ ...awareness.getLocalState() });
      this.refresh();
    };
    awareness.on("change", this.onChange);
    this.refresh();
  }

  publishSelection(ids: string[]): void {
    this.publish({ selection: ids });
  }

  publishEditing(node: string | null, param: string | null = null): void {
    this.publish({ editing: node && param ? { node, param } : null });
  }

  /** The pointer moved to graph coordinates (or left the canvas: `null`); throttled. */
  publishCursor(at: [number, number] | null): void {
    this.pending = at;
    const wait = this.last + CURSOR_MS - performance.now();
    if (wait <= 0 || at === null) { this.flushCursor(); return; }
    this.timer ??= setTimeout(() => this.flushCursor(), wait);
  }

  /** Other views on this graph, in client order. */
  users(): RemoteUser[] {
    const out: RemoteUser[] = [];
    for (const [client, state] of this.awareness.getStates()) {
      if (client === this.awareness.clientID || !state) continue;
      const user = (state.user ?? {}) as Partial<UserIdentity>;
      const vx = (state.vx ?? {}) as VxState;
      const name = String(user.display_name || user.name || `user ${client}`);
      out.push({
        client, name, initials: String(user.initials || initials(name)),
        color: (typeof user.color === "string" && cssColor(user.color)) || COLORS[client % COLORS.length],
        cursor: isPoint(vx.cursor) ? vx.cursor : null,
        selection: Array.isArray(vx.selection) ? vx.selection.filter((s): s is string => typeof s === "string") : [],
        editing: isEditing(vx.editing) ? vx.editing : null,
      });
    }
    return out.sort((a, b) => a.client - b.client);
  }

  onUsers(fn: (users: RemoteUser[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  destroy(): void {
    if (this.timer) clearTimeout(this.timer);
    this.awareness.off("change", this.onChange);
    this.listeners.clear();
  }

  private flushCursor(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.pending === undefined) return;
    this.last = performance.now();
    const at = this.pending;
    this.pending = undefined;
    this.publish({ cursor: at ? [Math.round(at[0]), Math.round(at[1])] : null });
  }

  private publish(change: Partial<Presence["vx"]>): void {
    this.vx = { ...this.vx, ...change };
    this.awareness.setLocalStateField("vx", this.vx);
  }

  private refresh(): void {
    const users = this.users();
    const remote = new Map<string, string>();
    const editing = new Map<string, { param: string; color: string; name: string }>();
    const cursors: Array<{ x: number; y: number; color: string; name: string }> = [];
    for (const u of users) {
      for (const id of u.selection) remote.set(id, u.color);
      if (u.editing) editing.set(u.editing.node, { param: u.editing.param, color: u.color, name: u.name });
      if (u.cursor) cursors.push({ x: u.cursor[0], y: u.cursor[1], color: u.color, name: u.name });
    }
    this.r.overlay.remote = remote;
    this.r.overlay.editing = editing;
    this.r.overlay.cursors = cursors;
    this.r.invalidate();
    for (const fn of [...this.listeners]) fn(users);
  }
}

function anonymous(client: number): UserIdentity {
  return { name: `Anonymous ${client % 1000}`, color: COLORS[client % COLORS.length] };
}

/**
 * A colour the canvas can paint with: JupyterLab gives identities colours such as
 * `var(--jp-collaborator-color3)`, which a 2D context does not understand.
 */
export function cssColor(color: string): string {
  const m = /^var\((--[\w-]+)\)$/.exec(color.trim());
  if (!m) return color;
  if (typeof document === "undefined") return "";
  return getComputedStyle(document.documentElement).getPropertyValue(m[1]).trim();
}

export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return (parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] ?? "?").slice(0, 2)).toUpperCase();
}

function isPoint(v: unknown): v is [number, number] {
  return Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === "number" && Number.isFinite(x));
}

function isEditing(v: unknown): v is { node: string; param: string } {
  const e = v as { node?: unknown; param?: unknown } | null;
  return !!e && typeof e.node === "string" && typeof e.param === "string";
}
