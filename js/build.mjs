// Bundles src/index.ts into ../vortex_jupyter/static/widget.js (+ widget.css): one minified
// ESM file, as anywidget's `_esm` expects; and src/standalone.ts into standalone.js, the canvas
// page `vortex serve` answers at / (server/rooms.py). Usage: node build.mjs [--watch]
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(here, "../vortex_jupyter/static");
mkdirSync(outdir, { recursive: true });

// yjs reads every map key and id with lib0's readVarString, which calls TextDecoder even for
// two-byte keys: swap in src/faststrings.ts (unit-tested) for lib0's export.
const FAST_STRINGS = {
  name: "lib0-short-strings",
  setup(build) {
    build.onLoad({ filter: /lib0[\\/]decoding\.js$/ }, async (args) => {
      const src = await readFile(args.path, "utf8");
      const line = "export const readVarString = string.utf8TextDecoder ? _readVarStringNative : _readVarStringPolyfill";
      if (!src.includes(line)) return { contents: src, loader: "js" }; // lib0 changed: keep it as is
      const helper = JSON.stringify(resolve(here, "src/faststrings.ts"));
      const fast = `import { makeReadVarString as __vxFast } from ${helper};
export const readVarString = __vxFast(readVarUint,
  string.utf8TextDecoder ? _readVarStringNative : _readVarStringPolyfill)`;
      return { contents: src.replace(line, fast), loader: "js", resolveDir: dirname(args.path) };
    });
  },
};

const options = {
  entryPoints: [resolve(here, "src/index.ts")],
  outfile: resolve(outdir, "widget.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: false,
  legalComments: "none",
  // JupyterLab ships its own yjs, which sets this global flag; the bundled (self-contained)
  // yjs would then console.error "Yjs was already imported". The two copies never exchange
  // objects (only bytes), so clear the flag before the bundled yjs initialises.
  banner: { js: 'delete globalThis["__ $YJS$ __"];' },
  logLevel: "info",
  plugins: process.env.VX_NO_FAST_STRINGS ? [] : [FAST_STRINGS],
};

const standalone = { ...options, entryPoints: [resolve(here, "src/standalone.ts")],
  outfile: resolve(outdir, "standalone.js") };

if (process.argv.includes("--watch")) {
  for (const opts of [options, standalone]) await (await esbuild.context(opts)).watch();
} else {
  await Promise.all([esbuild.build(options), esbuild.build(standalone)]);
  copyFileSync(resolve(here, "src/widget.css"), resolve(outdir, "widget.css"));
}
