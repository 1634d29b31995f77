/**
 * The JupyterLab 4 extension of vortex-jupyter, prebuilt (federated) and shipped in the wheel
 * under `share/jupyter/labextensions/vortex-jupyter` (pyproject.toml), so `pip install` is
 * enough. Built by `npm run build:lab`: `tsc -p tsconfig.lab.json` compiles `src/` to `lib/`,
 * then `jupyter labextension build .` (@jupyterlab/builder) bundles `lib/lab/index.js`.
 * JupyterLab's own `yjs` and `@jupyter/ydoc` are used, never a second copy (`sharedPackages`
 * in package.json); the anywidget bundle (`src/index.ts`, esbuild) is separate.
 *
 * For now one plugin registers one command, `vortex:about`; the browser test
 * `tests/e2e/test_labextension_e2e.py` checks both to prove the extension is loaded.
 */
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { Dialog, showDialog } from "@jupyterlab/apputils";

export const PLUGIN_ID = "vortex-jupyter:plugin";
export const ABOUT_COMMAND = "vortex:about";

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "vortex-jupyter: node-graph editing for diffusion pipelines in JupyterLab.",
  autoStart: true,
  activate: (app: JupyterFrontEnd): void => {
    app.commands.addCommand(ABOUT_COMMAND, {
      label: "About vortex-jupyter",
      caption: "What vortex-jupyter is and how to open a graph",
      execute: async () => {
        await showDialog({
          title: "vortex-jupyter",
          body:
            "A node-graph editor for diffusion pipelines. In a notebook: " +
            "import vortex_jupyter as vx; vx.Graph.default()",
          buttons: [Dialog.okButton()],
        });
      },
    });
  },
};

export default [plugin];
