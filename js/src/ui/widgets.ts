/**
 * The DOM editor for one param of one node, placed over its widget row. Only the widget
 * being edited is a DOM element; all others are drawn on the canvas.
 *
 * Kinds follow the spec: COMBO -> select, BOOLEAN -> checkbox, STRING -> input or textarea
 * (multiline), INT/FLOAT -> number with min/max/step (plus a range slider when
 * `display == "slider"`), seeds (`control_after_generate` or display "seed") get a
 * randomize button. Values are committed on change; Escape cancels, Enter commits.
 */
import type { PortSpecJson } from "../protocol";

export type Commit = (value: unknown) => void;

export function widgetKind(p: PortSpecJson): "combo" | "toggle" | "text" | "multiline" | "slider" | "seed" | "number" {
  if (p.choices || p.type === "COMBO") return "combo";
  if (p.type === "BOOLEAN" || p.display === "toggle") return "toggle";
  if (p.type === "STRING") return p.multiline ? "multiline" : "text";
  if (p.control_after_generate || p.display === "seed" || p.name === "seed" || p.name === "noise_seed") return "seed";
  if (p.display === "slider") return "slider";
  return "number";
}

/** Parses and clamps a numeric entry; INT values are rounded, huge ones kept as strings. */
export function parseNumber(p: PortSpecJson, raw: string): number | string | null {
  const text = raw.trim();
  if (p.type === "INT" && /^-?\d+$/.test(text)) {
    const big = BigInt(text);
    if (big > BigInt(Number.MAX_SAFE_INTEGER) || big < -BigInt(Number.MAX_SAFE_INTEGER)) return text;
  }
  let v = Number(text);
  if (!text || !Number.isFinite(v)) return null;
  if (p.type === "INT") v = Math.round(v);
  if (p.min !== undefined) v = Math.max(p.min, v);
  if (p.max !== undefined) v = Math.min(p.max, v);
  return v;
}

/** A random seed within the spec's range (64-bit seeds beyond 2^53 become strings). */
export function randomSeed(p: PortSpecJson, rand = Math.random): number | string {
  const max = p.max ?? 0xffffffff;
  if (max <= Number.MAX_SAFE_INTEGER) return Math.floor(rand() * (max + 1));
  const hi = BigInt(Math.floor(rand() * 2 ** 32)), lo = BigInt(Math.floor(rand() * 2 ** 32));
  const v = ((hi << 32n) | lo) % (BigInt(Math.floor(max)) + 1n);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? v.toString() : Number(v);
}

/** Builds the editor element; `commit` is called with the new value. */
export function buildEditor(p: PortSpecJson, value: unknown, commit: Commit, close: () => void): HTMLElement {
  const kind = widgetKind(p);
  const wrap = document.createElement("div");
  wrap.className = `vx-editor vx-editor-${kind}`;
  wrap.dataset.param = p.name;
  const done = (v: unknown): void => { commit(v); close(); };
  if (kind === "combo") wrap.appendChild(comboEl(p, value, done));
  else if (kind === "toggle") wrap.appendChild(toggleEl(value, commit));
  else if (kind === "text" || kind === "multiline") wrap.appendChild(textEl(kind, value, done, close));
  else wrap.append(...numberEls(p, kind, value, commit, done, close));
  return wrap;
}

function comboEl(p: PortSpecJson, value: unknown, done: Commit): HTMLSelectElement {
  const s = document.createElement("select");
  for (const c of p.choices ?? []) {
    const o = document.createElement("option");
    o.value = String(c);
    o.textContent = String(c);
    o.selected = c === value;
    s.appendChild(o);
  }
  s.addEventListener("change", () => done(p.choices?.find((c) => String(c) === s.value) ?? s.value));
  return s;
}

function toggleEl(value: unknown, commit: Commit): HTMLInputElement {
  const c = document.createElement("input");
  c.type = "checkbox";
  c.checked = Boolean(value);
  c.addEventListener("change", () => commit(c.checked));
  return c;
}

function textEl(kind: string, value: unknown, done: Commit, close: () => void): HTMLElement {
  const t = kind === "multiline" ? document.createElement("textarea") : document.createElement("input");
  t.value = value === undefined || value === null ? "" : String(value);
  t.addEventListener("keydown", (e) => {
    const ke = e as KeyboardEvent;
    ke.stopPropagation();
    if (ke.key === "Escape") close();
    else if (ke.key === "Enter" && (kind !== "multiline" || ke.ctrlKey || ke.metaKey)) done(t.value);
  });
  t.addEventListener("change", () => done(t.value));
  return t;
}

function numberEls(p: PortSpecJson, kind: string, value: unknown, commit: Commit, done: Commit, close: () => void): HTMLElement[] {
  const n = document.createElement("input");
  n.type = kind === "seed" ? "text" : "number";
  if (kind !== "seed") setRange(n, p);
  n.value = value === undefined ? "" : String(value);
  const apply = (): void => { const v = parseNumber(p, n.value); if (v !== null) done(v); };
  n.addEventListener("keydown", (e) => {
    e.stopPropagation();
    if (e.key === "Enter") apply();
    else if (e.key === "Escape") close();
  });
  n.addEventListener("change", apply);
  const out: HTMLElement[] = [n];
  if (kind === "slider") {
    const r = document.createElement("input");
    r.type = "range";
    setRange(r, p);
    r.value = n.value;
    r.addEventListener("input", () => { n.value = r.value; const v = parseNumber(p, r.value); if (v !== null) commit(v); });
    out.unshift(r);
  }
  if (kind === "seed") {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "vx-seed-random";
    b.title = "randomize";
    b.textContent = "🎲";
    b.addEventListener("mousedown", (e) => e.preventDefault());
    b.addEventListener("click", () => { const v = randomSeed(p); n.value = String(v); commit(v); });
    out.push(b);
  }
  return out;
}

function setRange(el: HTMLInputElement, p: PortSpecJson): void {
  if (p.min !== undefined) el.min = String(p.min);
  if (p.max !== undefined) el.max = String(p.max);
  el.step = p.step !== undefined ? String(p.step) : p.type === "INT" ? "1" : "any";
}
