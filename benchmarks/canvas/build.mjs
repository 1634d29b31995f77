// Bundles bench_entry.ts (fake kernel + litegraph) into out/bench.js. The widget itself is
// NOT bundled here: the page imports the real vortex_jupyter/static/widget.js at run time.
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
// esbuild and litegraph are dev dependencies of js/ (npm --prefix js ci installs them).
const esbuild = createRequire(resolve(here, "../../js/package.json"))("esbuild");
await esbuild.build({
  entryPoints: [resolve(here, "bench_entry.ts")],
  outfile: resolve(here, "out/bench.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  nodePaths: [resolve(here, "../../js/node_modules")],
  external: ["/vortex_jupyter/static/widget.js"],
  logLevel: "warning",
});
