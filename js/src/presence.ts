/**
 * Awareness: this view publishes its selection; other views' selections are outlined in
 * their user color. Awareness rides the same comm (y-websocket message type 1).
 */
import type { Awareness } from "y-protocols/awareness";
import type { Renderer } from "./render/renderer";

const COLORS = ["#ef5350", "#ab47bc", "#42a5f5", "#26a69a", "#ffa726", "#8d6e63"];

export class Presence {
  readonly color: string;

  constructor(private awareness: Awareness, private r: Renderer) {
    this.color = COLORS[awareness.clientID % COLORS.length];
    awareness.setLocalState({ user: { color: this.color }, selection: [] });
    awareness.on("change", () => this.refresh());
  }

  publishSelection(ids: string[]): void {
    this.awareness.setLocalStateField("selection", ids);
  }

  private refresh(): void {
    const remote = new Map<string, string>();
    for (const [client, state] of this.awareness.getStates()) {
      if (client === this.awareness.clientID) continue;
      const sel = (state as { selection?: unknown }).selection;
      const color = (state as { user?: { color?: string } }).user?.color ?? "#ef5350";
      if (Array.isArray(sel)) for (const id of sel) if (typeof id === "string") remote.set(id, color);
    }
    this.r.overlay.remote = remote;
    this.r.invalidate();
  }
}
