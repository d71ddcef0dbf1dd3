// Builds the optional OpenBLAS addon (npm "install" and "build:native" scripts).
// Never fails the install: without a C compiler or OpenBLAS, pma runs on its WebAssembly
// backend, so a failed build prints one line saying so and exits 0. The full compiler
// output goes to native/build/build.log for whoever wants the details.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const addon = join(here, "build", "Release", "pma_blas.node");
const hint =
  "pma: OpenBLAS backend not built; matmul will use the WebAssembly backend. " +
  "For the faster one: apt-get install libopenblas-dev (needs a C compiler), then npm run build:native";

function nodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) {
    return process.env.npm_config_node_gyp;
  }
  // npm ships node-gyp; outside an npm script the env var above is not set.
  const bundled = join(
    dirname(process.execPath),
    "..",
    "lib",
    "node_modules",
    "npm",
    "node_modules",
    "node-gyp",
    "bin",
    "node-gyp.js",
  );
  return existsSync(bundled) ? bundled : undefined;
}

function build() {
  if (process.env.PMA_SKIP_NATIVE === "1") return "skipped (PMA_SKIP_NATIVE=1)";
  const gyp = nodeGyp();
  if (gyp === undefined) return "node-gyp not found";
  const args = [gyp, "rebuild", "--directory", here];
  // Build against the headers installed with node itself, so no download is attempted
  // (installs may run offline); an explicit npm_config_nodedir still wins.
  const prefix = join(dirname(process.execPath), "..");
  if (!process.env.npm_config_nodedir && existsSync(join(prefix, "include", "node", "node_api.h"))) {
    args.push(`--nodedir=${prefix}`);
  }
  const r = spawnSync(process.execPath, args, { encoding: "utf8", timeout: 300_000 });
  mkdirSync(join(here, "build"), { recursive: true });
  writeFileSync(join(here, "build", "build.log"), `${r.stdout ?? ""}\n${r.stderr ?? ""}\n${r.error ?? ""}\n`);
  if (r.status !== 0) return `node-gyp exited with ${r.status ?? r.signal}`;
  return verify();
}

/** Loads the fresh addon and multiplies two 2x2 matrices, so a broken link shows up now. */
function verify() {
  try {
    const m = createRequire(import.meta.url)(addon);
    const a = new Float32Array([1, 2, 3, 4]);
    const c = new Float32Array([Number.NaN, 0, 0, 0]);
    m.sgemm(false, false, 2, 2, 2, 1, a, 0, 2, a, 0, 2, 0, c, 0, 2);
    const want = [7, 10, 15, 22];
    if (!want.every((v, i) => c[i] === v)) return `self-check gave ${Array.from(c)}`;
    return undefined;
  } catch (e) {
    return `addon does not load: ${e instanceof Error ? e.message.split("\n")[0] : e}`;
  }
}

const t0 = Date.now();
const failure = build();
if (failure === undefined) {
  console.log(`pma: built the OpenBLAS matmul backend in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
} else {
  console.log(`${hint} [${failure}; details in native/build/build.log]`);
}
