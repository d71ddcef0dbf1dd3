// Compiles wasm/gemm/gemm.wat to dist/src/nn/kernels/wasm/gemm.wasm (npm "build:gemm",
// run after "build"). The binary is built from the text source on every build rather than
// committed, so the kernel a reader reviews is the kernel that runs.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import wabt from "wabt";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "dist", "src", "nn", "kernels", "wasm", "gemm.wasm");
// Shared memory (both threads compute in one memory) needs the threads feature.
const features = { simd: true, threads: true };
const tools = await wabt();
const mod = tools.parseWat("gemm.wat", readFileSync(join(here, "gemm.wat"), "utf8"), features);
try {
  mod.validate(features);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(`${out}.tmp`, mod.toBinary({}).buffer);
  renameSync(`${out}.tmp`, out);
} finally {
  mod.destroy();
}
