/**
 * The JupyterLab 4 extension of vortex-jupyter, prebuilt (federated) and shipped in the wheel
 * under `share/jupyter/labextensions/vortex-jupyter` (pyproject.toml), so `pip install` is
 * enough. Built by `npm run build:lab`: `tsc -p tsconfig.lab.json` compiles `src/` to `lib/`,
 * then `jupyter labextension build .` (@jupyterlab/builder) bundles `lib/lab/index.js`.
 * JupyterLab's own `yjs` and `@jupyter/ydoc` are used, never a second copy (`sharedPackages`
 * in package.json); the anywidget bundle (`src/index.ts`, esbuild) is separate.
 *
 * What it adds:
 * - the file type `*.vortex.json` and the "Vortex canvas" editor: default for workflows, and
 *   in "Open With" for any `.json` (ComfyUI workflows and API prompts) and PNG (ComfyUI's
 *   images carry their workflow); `panel.ts`;
 * - with jupyter-collaboration, workflows as shared documents (content type `vortex`, saved
 *   by the server: `vortex_jupyter/lab/ydoc.py`);
 * - the canvas as a notebook output for every user, trusted or not (`renderer.ts`);
 * - "New Vortex workflow" in the launcher, the file browser's New menu and the palette.
 */
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { ICommandPalette, ISessionContextDialogs, Dialog, showDialog } from "@jupyterlab/apputils";
import { ICollaborativeContentProvider } from "@jupyter/collaborative-drive";
import { IDefaultFileBrowser } from "@jupyterlab/filebrowser";
import { ILauncher } from "@jupyterlab/launcher";
import { IRenderMimeRegistry } from "@jupyterlab/rendermime";
import { LabIcon } from "@jupyterlab/ui-components";
import type { User } from "@jupyterlab/services";
import type { UserIdentity } from "../presence";
import { CONTENT_TYPE, MODEL_NAME, PNG_MODEL_NAME, VortexDoc, VortexModelFactory } from "./model";
import { VortexWidgetFactory } from "./panel";
import { MIME, RANK, rendererFactory } from "./renderer";

export const PLUGIN_ID = "vortex-jupyter:plugin";
export const ABOUT_COMMAND = "vortex:about";
export const NEW_COMMAND = "vortex:new-workflow";
export const FACTORY = "Vortex canvas";
export const PNG_FACTORY = "Vortex canvas (PNG)";
export const FILE_TYPE = "vortex";
/** The id jupyter-collaboration registers its content provider under. */
const RTC_PROVIDER = "rtc";

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g fill="none" stroke="#7e57c2" stroke-width="2">
<rect x="2" y="3" width="7" height="6" rx="1.5"/><rect x="15" y="9" width="7" height="6" rx="1.5"/><rect x="2" y="15" width="7" height="6" rx="1.5"/>
<path d="M9 6c4 0 2 6 6 6M9 18c4 0 2-6 6-6"/></g></svg>`;
export const vortexIcon = new LabIcon({ name: "vortex-jupyter:workflow", svgstr: ICON_SVG });

/** An empty workflow (the native format); nodes are added on the canvas or in Python. */
const EMPTY_WORKFLOW = `${JSON.stringify({ schema_version: 1, nodes: [], edges: [], groups: [], extra: {} }, null, 2)}\n`;

function identity(user: User.IManager): UserIdentity | null {
  const id = user.identity;
  if (!id) return null;
  return { name: id.name, display_name: id.display_name, initials: id.initials, color: id.color, username: id.username };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "vortex-jupyter: node-graph editing for diffusion pipelines in JupyterLab.",
  autoStart: true,
  requires: [IRenderMimeRegistry],
  optional: [ICollaborativeContentProvider, ISessionContextDialogs, ILauncher, ICommandPalette, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd, rendermime: IRenderMimeRegistry, collab: ICollaborativeContentProvider | null,
    dialogs: ISessionContextDialogs | null, launcher: ILauncher | null, palette: ICommandPalette | null,
    browser: IDefaultFileBrowser | null,
  ): void => {
    const user = (): UserIdentity | null => identity(app.serviceManager.user);

    // ---- workflow documents -------------------------------------------------------------
    app.docRegistry.addFileType({
      name: FILE_TYPE,
      displayName: "Vortex workflow",
      extensions: [".vortex.json"],
      mimeTypes: ["application/vnd.vortex.workflow+json"],
      fileFormat: "text",
      contentType: "file",
      icon: vortexIcon,
    });
    app.docRegistry.addModelFactory(new VortexModelFactory(MODEL_NAME, CONTENT_TYPE, "text"));
    app.docRegistry.addModelFactory(new VortexModelFactory(PNG_MODEL_NAME, "file", "base64"));
    const services = { user, dialogs: dialogs ?? undefined };
    const common = { preferKernel: true, canStartKernel: true, shutdownOnClose: false, label: FACTORY };
    // with jupyter-collaboration, documents open through its content provider ("rtc"): their
    // shared model is a VortexDoc in the file's room
    const factory = new VortexWidgetFactory(
      { ...common, name: FACTORY, modelName: MODEL_NAME, fileTypes: [FILE_TYPE, "json"], defaultFor: [FILE_TYPE],
        contentProviderId: collab ? RTC_PROVIDER : undefined }, services);
    const pngFactory = new VortexWidgetFactory(
      { ...common, name: PNG_FACTORY, modelName: PNG_MODEL_NAME, fileTypes: ["png"] }, services);
    for (const f of [factory, pngFactory]) {
      f.widgetCreated.connect((_, widget) => { widget.title.icon = vortexIcon; });
      app.docRegistry.addWidgetFactory(f);
    }
    collab?.sharedModelFactory.registerDocumentFactory(CONTENT_TYPE, () => new VortexDoc());

    // ---- the canvas in notebook outputs -------------------------------------------------
    rendermime.addFactory(rendererFactory(user), RANK);

    // ---- commands -----------------------------------------------------------------------
    app.commands.addCommand(NEW_COMMAND, {
      label: (args) => (args.isPalette ? "New Vortex workflow" : args.isLauncher ? "Vortex workflow" : "Vortex Workflow"),
      caption: "A new empty node graph (*.vortex.json) with a kernel to run it",
      icon: (args) => (args.isPalette ? undefined : vortexIcon),
      execute: async (args) => {
        const cwd = String(args.cwd ?? browser?.model.path ?? "");
        const created = await app.serviceManager.contents.newUntitled({ path: cwd, type: "file", ext: ".vortex.json" });
        await app.serviceManager.contents.save(created.path, { type: "file", format: "text", content: EMPTY_WORKFLOW });
        return app.commands.execute("docmanager:open", { path: created.path, factory: FACTORY });
      },
    });
    app.commands.addCommand(ABOUT_COMMAND, {
      label: "About vortex-jupyter",
      caption: "What vortex-jupyter is and how to open a graph",
      execute: async () => {
        await showDialog({
          title: "vortex-jupyter",
          body:
            "A node-graph editor for diffusion pipelines. In a notebook: " +
            "import vortex_jupyter as vx; vx.Graph.default() — or open a *.vortex.json, a ComfyUI " +
            "workflow (.json) or a ComfyUI PNG with Open With → Vortex canvas.",
          buttons: [Dialog.okButton()],
        });
      },
    });
    launcher?.add({ command: NEW_COMMAND, category: "Other", rank: 1 });
    palette?.addItem({ command: NEW_COMMAND, category: "Vortex", args: { isPalette: true } });
    palette?.addItem({ command: ABOUT_COMMAND, category: "Vortex" });
    app.contextMenu.addItem({ command: NEW_COMMAND, selector: ".jp-DirListing-content", rank: 55 });
  },
};

export { MIME };
export default [plugin];
