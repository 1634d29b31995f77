/**
 * The canvas without Jupyter: the page `vortex serve` answers at `/` (bundled to
 * `vortex_jupyter/static/standalone.js`).
 *
 * `/?graph=ID` opens graph document ID: a `CanvasApp` on a `SocketModel` connected to the
 * document's room, a bar above it with the document's name and the connection's state.
 * Without `graph`, the page lists the documents (`GET /api/v1/graphs`) to pick one. A
 * `?token=` the page was opened with goes on to every request and to the room.
 */
import { CanvasApp } from "./app";
import { roomUrl, SocketModel } from "./socket";

export interface GraphSummary { id: string; name: string; version: number; updated: number; nodes: number }

/** The page's link to document `id`, or to the list with `id` null (the token kept). */
export function pageHref(pageUrl: string, id: string | null, token: string | null): string {
  const url = new URL(pageUrl);
  url.search = "";
  url.hash = "";
  if (id !== null) url.searchParams.set("graph", id);
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

/** `fetch` of an API path relative to the page, with the token as a bearer header. */
export async function api(pageUrl: string, path: string, token: string | null): Promise<unknown> {
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  const resp = await fetch(new URL(path, pageUrl), { headers });
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
    throw new Error(err ? `${err.code}: ${err.message}` : `${path}: HTTP ${resp.status}`);
  }
  return body;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, text = ""): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = cls;
  e.textContent = text;
  return e;
}

/** The list of documents to pick from. */
export async function showList(root: HTMLElement, pageUrl: string, token: string | null): Promise<void> {
  const box = el("div", "vx-standalone-list");
  box.append(el("h1", "", "Graph documents"));
  root.append(box);
  try {
    const docs = (await api(pageUrl, "api/v1/graphs", token)) as GraphSummary[];
    if (!docs.length) box.append(el("p", "", "No documents yet: POST a graph to /api/v1/graphs."));
    const list = el("ul", "");
    for (const d of docs) {
      const li = el("li", "");
      const a = el("a", "", d.name || d.id);
      a.href = pageHref(pageUrl, d.id, token);
      li.append(a, el("span", "vx-standalone-meta", ` ${d.nodes} nodes, version ${d.version}`));
      list.append(li);
    }
    box.append(list);
  } catch (err) {
    box.append(el("p", "vx-standalone-error", `Cannot list the documents: ${err instanceof Error ? err.message : err}`));
  }
}

/** Document `graph` on a canvas connected to its room. */
export function showCanvas(root: HTMLElement, pageUrl: string, graph: string, token: string | null): CanvasApp {
  const bar = el("div", "vx-standalone-bar");
  const back = el("a", "", "All graphs");
  back.href = pageHref(pageUrl, null, token);
  const name = el("strong", "", graph);
  const state = el("span", "vx-standalone-state", "connecting…");
  bar.append(back, name, state);
  const host = el("div", "vx-standalone-canvas");
  root.append(bar, host);
  api(pageUrl, `api/v1/graphs/${encodeURIComponent(graph)}`, token)
    .then((d) => { name.textContent = (d as GraphSummary).name || graph; document.title = `${name.textContent} – vortex`; })
    .catch((err) => { state.textContent = err instanceof Error ? err.message : String(err); });
  const model = new SocketModel(roomUrl(pageUrl, graph, token), {
    onStatus: (status, detail) => {
      state.textContent = status === "open" ? "live" : detail || status;
      state.dataset.status = status;
    },
  });
  const app = new CanvasApp(model, host);
  window.addEventListener("pagehide", () => { app.destroy(); model.close(); });
  return app;
}

export function start(root: HTMLElement, pageUrl: string = window.location.href): void {
  const query = new URL(pageUrl).searchParams;
  const graph = query.get("graph");
  const token = query.get("token");
  if (graph) showCanvas(root, pageUrl, graph, token);
  else void showList(root, pageUrl, token);
}

const root = typeof document !== "undefined" ? document.getElementById("vx-app") : null;
if (root) start(root);
