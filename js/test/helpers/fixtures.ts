/** Node specs and small graphs shared by the unit tests (shaped like REGISTRY.to_json()). */
import * as Y from "yjs";
import { GraphDoc } from "../../src/docmodel";
import type { Specs } from "../../src/protocol";
import { Scene } from "../../src/scene";

export const SPECS: Specs = {
  Loader: {
    type: "Loader", display_name: "Load Image", category: "image",
    inputs: [{ name: "path", type: "STRING", default: "a.png", widget: true }],
    outputs: [{ name: "IMAGE", type: "IMAGE" }, { name: "MASK", type: "MASK" }],
  },
  Blur: {
    type: "Blur", display_name: "Blur", category: "image/filters",
    inputs: [
      { name: "image", type: "IMAGE", widget: false },
      { name: "radius", type: "FLOAT", default: 2, min: 0, max: 10, step: 0.5, widget: true },
    ],
    outputs: [{ name: "IMAGE", type: "IMAGE" }],
  },
  KSampler: {
    type: "KSampler", display_name: "KSampler", category: "sampling",
    inputs: [
      { name: "latent", type: "LATENT", widget: false },
      { name: "seed", type: "INT", default: 0, min: 0, max: 0xffffffffffffffff, control_after_generate: true, widget: true },
      { name: "sampler", type: "COMBO", choices: ["euler", "ddim"], widget: true },
    ],
    outputs: [{ name: "LATENT", type: "LATENT" }],
  },
};

export function makeView(doc = new Y.Doc(), specs: Specs = SPECS): { doc: Y.Doc; g: GraphDoc; scene: Scene; origin: object } {
  const origin = { view: Math.random() };
  const g = new GraphDoc(doc, origin);
  return { doc, g, scene: new Scene(g, specs), origin };
}
