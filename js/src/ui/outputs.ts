/**
 * Images from the kernel (`{"t":"image"}` binary messages): decoded off the main thread with
 * createImageBitmap and drawn on their node; final ones are also listed under the canvas
 * (the last run's outputs, cleared when a new run starts).
 */
import type { RunState } from "../runstate";

/** FNV-1a over the bytes: identifies an image re-sent to this view (e.g. another page's hello). */
export function imageKey(node: string, bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return `${node}:${bytes.length}:${(h >>> 0).toString(16)}`;
}

export class OutputImages {
  readonly el: HTMLDivElement;
  private listed = new Set<string>();

  constructor(parent: HTMLElement, private run: RunState) {
    this.el = document.createElement("div");
    this.el.className = "vx-outputs";
    this.el.setAttribute("aria-label", "output images of the last run");
    parent.appendChild(this.el);
  }

  /** Decodes and stores an image for `node`; resolves when it can be drawn. */
  async receive(node: string, final: boolean, mime: string, bytes: Uint8Array): Promise<void> {
    const blob = new Blob([bytes as BlobPart], { type: mime });
    const bmp = await createImageBitmap(blob);
    const old = this.run.images.get(node);
    if (old && "close" in old) (old as ImageBitmap).close();
    this.run.images.set(node, bmp);
    if (!final) return;
    // The kernel re-sends each node's latest image when any page on the same comm says
    // hello; list an image once.
    const key = imageKey(node, bytes);
    if (this.listed.has(key)) return;
    this.listed.add(key);
    const url = URL.createObjectURL(blob);
    this.run.finals.push({ node, url, mime });
    const img = document.createElement("img");
    img.className = "vx-output-image";
    img.src = url;
    img.alt = `output of ${node}`;
    img.dataset.node = node;
    this.el.appendChild(img);
  }

  /** A new run started: drop the previous run's list (RunState revoked the URLs). */
  clear(): void {
    this.listed.clear();
    this.el.replaceChildren();
  }
}
