/**
 * Just enough of `document` for the accessible node list (`src/ui/a11y.ts`): vitest runs in
 * node, without a DOM. Install with `vi.stubGlobal("document", fakeDocument())`.
 */
export class FakeElement {
  children: FakeElement[] = [];
  parent: FakeElement | null = null;
  readonly dataset: Record<string, string> = {};
  readonly attributes = new Map<string, string>();
  className = "";
  textContent = "";

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

  remove(): void {
    if (this.parent) this.parent.children = this.parent.children.filter((c) => c !== this);
    this.parent = null;
  }
}

export function fakeDocument(): { createElement(tag: string): FakeElement } {
  return { createElement: (tag) => new FakeElement(tag.toUpperCase()) };
}
