/**
 * Just enough of `document` for the accessible node list (`src/ui/a11y.ts`) and the title
 * editors (`src/ui/overlays.ts`): vitest runs in node, without a DOM. Install with
 * `vi.stubGlobal("document", fakeDocument())`; `fire` dispatches an event to a fake element's
 * listeners.
 */
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

  focus(): void { this.focused = true; }
  select(): void {}

  contains(other: unknown): boolean {
    return other === this || this.children.some((c) => c.contains(other));
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

export function fakeDocument(): { createElement(tag: string): FakeElement } {
  return { createElement: (tag) => new FakeElement(tag.toUpperCase()) };
}
