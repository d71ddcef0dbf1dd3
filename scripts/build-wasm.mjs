// Compiles every WebAssembly text kernel to the .wasm its loader reads (npm "build",
// after tsc). The .wat sources are the only form committed; binaries are always built
// here, so the kernel a reader reviews is the kernel that runs.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import binaryen from "binaryen";
import wabtInit from "wabt";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

// Outputs sit where the compiled loaders look: src/merge/kernels.ts reads
// ../../wasm/merge.wasm, src/nn/kernels/wasm/module.ts reads ./gemm.wasm beside itself.
// Only merge goes through Binaryen: gemm has always shipped exactly as written.
const KERNELS = [
  { wat: "wasm/merge.wat", wasm: "dist/wasm/merge.wasm", optimize: true },
  { wat: "wasm/gemm/gemm.wat", wasm: "dist/src/nn/kernels/wasm/gemm.wasm", optimize: false },
];

// Shared memory (gemm's two threads compute in one memory) needs the threads feature.
const FEATURES = { simd: true, threads: true, bulk_memory: true };

const wabt = await wabtInit();
for (const k of KERNELS) {
  const bytes = compile(join(root, k.wat));
  const out = join(root, k.wasm);
  mkdirSync(dirname(out), { recursive: true });
  // Write then rename, so a loader never reads a half-written module.
  writeFileSync(`${out}.tmp`, k.optimize ? optimize(bytes) : bytes);
  renameSync(`${out}.tmp`, out);
}

function compile(path) {
  const mod = wabt.parseWat(basename(path), readFileSync(path, "utf8"), FEATURES);
  try {
    // wabt validates with default features unless given them.
    mod.validate(FEATURES);
    return mod.toBinary({}).buffer;
  } finally {
    mod.destroy();
  }
}

// wabt translates text to binary literally; V8 does not inline small wasm functions,
// and a call per SIMD vector costs ~7x in the merge loops. Binaryen's -O3 inlines the
// helpers so the .wat can stay readable.
function optimize(bytes) {
  const m = binaryen.readBinary(bytes);
  m.setFeatures(binaryen.Features.All);
  binaryen.setOptimizeLevel(3);
  binaryen.setShrinkLevel(0);
  binaryen.setAlwaysInlineMaxSize(64);
  binaryen.setFlexibleInlineMaxSize(512);
  m.optimize();
  if (!m.validate()) throw new Error("binaryen produced an invalid module");
  const out = m.emitBinary();
  m.dispose();
  return out;
}
