// Compiles every WebAssembly text module in wasm/ to dist/wasm/<name>.wasm.
// The .wat sources are the only form committed; binaries are always built here.
import { mkdirSync, readdirSync, readFileSync, writeFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import binaryen from "binaryen";
import wabtInit from "wabt";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const srcDir = join(root, "wasm");
const outDir = join(root, "dist", "wasm");
mkdirSync(outDir, { recursive: true });

const wabt = await wabtInit();
for (const file of readdirSync(srcDir).filter((f) => f.endsWith(".wat")).sort()) {
  const text = readFileSync(join(srcDir, file), "utf8");
  const module = wabt.parseWat(file, text, { simd: true, threads: true, bulk_memory: true });
  module.validate();
  const { buffer } = module.toBinary({});
  module.destroy();
  const optimized = optimize(buffer);
  const out = join(outDir, file.replace(/\.wat$/, ".wasm"));
  writeFileSync(out + ".tmp", optimized);
  renameSync(out + ".tmp", out);
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
