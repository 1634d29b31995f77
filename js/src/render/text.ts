/**
 * Text fitting for canvas labels, pure (the measure function is passed in) so it is unit
 * tested without a canvas.
 */

export type Measure = (text: string) => number;

/** Truncates `text` with an ellipsis to fit `max` px. */
export function clipText(text: string, max: number, measure: Measure): string {
  if (measure(text) <= max) return text;
  let lo = 0, hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (measure(text.slice(0, mid) + "…") <= max) lo = mid;
    else hi = mid - 1;
  }
  return text.slice(0, lo) + "…";
}

/**
 * Greedy word wrap into at most `maxLines` lines of `max` px; the last line is clipped with
 * an ellipsis when text remains, and a word longer than a line is clipped on its own line.
 */
export function wrapText(text: string, max: number, measure: Measure, maxLines: number): string[] {
  const words = text.replace(/\s+/g, " ").trim().split(" ").filter(Boolean);
  const lines: string[] = [];
  let cur = "";
  for (let i = 0; i < words.length; i++) {
    const next = cur ? `${cur} ${words[i]}` : words[i];
    if (measure(next) <= max || !cur) { cur = next; continue; }
    if (lines.length === maxLines - 1) { cur = `${cur} ${words.slice(i).join(" ")}`; break; }
    lines.push(cur);
    cur = words[i];
  }
  if (cur) lines.push(cur);
  return lines.slice(0, maxLines).map((l) => clipText(l, max, measure));
}

/**
 * A failed node's message as shown on the node itself: the node is the one drawn, so the
 * engine's "node 'id' (type)" preamble is dropped to leave room for the cause.
 */
export function nodeErrorText(message: string): string {
  return message.replace(/(^|: )node '[^']*'(?: \([^)]*\))? /, "$1");
}

/**
 * What a widget row shows: the param's value; "(linked)" when a link drives it; for a param
 * not set (a node built in Python with defaults left out) the spec default, dimmed, because
 * that is the value the node runs with ("—" only when there is no default either).
 */
export function widgetText(value: unknown, linked: boolean, fallback: unknown): { text: string; dim: boolean } {
  if (linked) return { text: "(linked)", dim: false };
  const show = (v: unknown): string => (typeof v === "boolean" ? (v ? "true" : "false") : String(v)).replace(/\s+/g, " ");
  if (value !== undefined) return { text: show(value), dim: false };
  if (fallback !== undefined && fallback !== null) return { text: show(fallback), dim: true };
  return { text: "—", dim: true };
}
