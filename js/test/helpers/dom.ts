/**
 * Just enough of `document` for the accessible node list (`src/ui/a11y.ts`), the title
 * editors (`src/ui/overlays.ts`) and the palette (`src/ui/palette.ts`): vitest runs in node,
 * without a DOM. Install with `vi.stubGlobal("document", fakeDocument())`; `fire` dispatches an
 * event to a fake element's listeners; `focus()` makes an element `document.activeElement`.
 */
let active: FakeElement | null = null;

export class FakeElement {
  children: FakeElement[] = [];
  parent: FakeElement | null = null;
  readonly dataset: Record<string, string> = {};
  readonly attributes = new Map<string, string>();
  className = "";
  textContent = "";
  value = "";
  readonly style: Record<string, string> = {};
  focused = false;
  hidden = false;
  placeholder = "";
  /** Layout sizes (px), 0 unless a test sets them. */
  offsetWidth = 0;
  offsetHeight = 0;
  clientWidth = 0;
  clientHeight = 0;
  private listeners = new Map<string, Array<(e: unknown) => void>>();

  constructor(readonly tagName: string) {}

  setAttribute(name: string, value: string): void { this.attributes.set(name, String(value)); }
  getAttribute(name: string): string | null { return this.attributes.get(name) ?? null; }

  appendChild(child: FakeElement): FakeElement {
    child.remove();
    child.parent = this;
    this.children.push(child);
    return child;
  }

  append(...children: FakeElement[]): void {
    for (const c of children) this.appendChild(c);
  }

  replaceChildren(...children: FakeElement[]): void {
    for (const c of this.children) c.parent = null;
    this.children = [];
    for (const c of children) this.appendChild(c);
  }

  addEventListener(type: string, fn: (e: unknown) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }

  /** Dispatches `{type, ...props}` to this element's listeners. */
  fire(type: string, props: Record<string, unknown> = {}): void {
    const e = { type, target: this, stopPropagation: () => undefined, preventDefault: () => undefined, ...props };
    for (const fn of this.listeners.get(type) ?? []) fn(e);
  }

  focus(): void { this.focused = true; active = this; }
  select(): void {}

  contains(other: unknown): boolean {
    return other === this || this.children.some((c) => c.contains(other));
  }

  /** Descendants with the class of a `.class` selector, in document order. */
  querySelectorAll(selector: string): FakeElement[] {
    const cls = selector.replace(/^\./, "");
    return this.children.flatMap((c) => [...(c.className.split(" ").includes(cls) ? [c] : []), ...c.querySelectorAll(selector)]);
  }

  /** The first descendant with this class. */
  find(cls: string): FakeElement | undefined {
    for (const c of this.children) {
      if (c.className.split(" ").includes(cls)) return c;
      const deep = c.find(cls);
      if (deep) return deep;
    }
    return undefined;
  }

  remove(): void {
    if (this.parent) this.parent.children = this.parent.children.filter((c) => c !== this);
    this.parent = null;
  }
}

export function fakeDocument(): { createElement(tag: string): FakeElement; readonly activeElement: FakeElement | null } {
  active = null;
  return { createElement: (tag) => new FakeElement(tag.toUpperCase()), get activeElement() { return active; } };
}
