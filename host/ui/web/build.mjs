// Builds the UI's assets into the directory given as the first argument (host/ui/dist by
// `make ui`): app.js and app.css bundled and minified by esbuild, index.html copied. The output
// depends only on the sources and the locked esbuild version, so two builds are byte-identical
// (`make ui-check` builds twice and compares, and compares with the committed host/ui/dist).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
// Relative to where the build runs (esbuild would take it relative to this directory).
const out = process.argv[2] && resolve(process.argv[2]);
if (!out) {
  console.error("usage: node build.mjs OUT_DIR");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const common = {
  bundle: true,
  minify: true,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
  absWorkingDir: here,
};
await build({
  ...common,
  entryPoints: ["src/main.js"],
  outfile: join(out, "app.js"),
  format: "iife",
  target: ["es2020"],
});
await build({ ...common, entryPoints: ["src/style.css"], outfile: join(out, "app.css") });
copyFileSync(join(here, "src/index.html"), join(out, "index.html"));
