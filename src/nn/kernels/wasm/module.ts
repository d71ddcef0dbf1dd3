import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { PmaError } from "../../../common/errors.js";

/** Written by `npm run build` (scripts/build-wasm.mjs) next to this file's compiled JS. */
const WASM = fileURLToPath(new URL("./gemm.wasm", import.meta.url));
/** The text source, four levels up from dist/src/nn/kernels/wasm. */
const WAT = fileURLToPath(new URL("../../../../../wasm/gemm/gemm.wat", import.meta.url));

/** The exports of wasm/gemm/gemm.wat (addresses in bytes, leading dimensions in elements). */
export interface GemmKernels {
  pack_a(trans: number, src: number, ld: number, mc: number, kc: number, dst: number): void;
  pack_b(trans: number, src: number, ld: number, kc: number, nc: number, dst: number): void;
  macro(
    mc: number,
    nc: number,
    kc: number,
    pa: number,
    pb: number,
    c: number,
    ldc: number,
    alpha: number,
    beta: number,
    tile: number,
  ): void;
}

let compiled: Promise<WebAssembly.Module> | undefined;

/**
 * The compiled kernel module. A checkout built with plain `tsc` has no .wasm yet; then the
 * text source is compiled in memory with wabt (a dev dependency), so tests still run.
 */
export function gemmModule(): Promise<WebAssembly.Module> {
  compiled ??= (async () => {
    if (existsSync(WASM)) return WebAssembly.compile(readFileSync(WASM));
    try {
      const { default: wabt } = await import("wabt");
      const features = { simd: true, threads: true };
      const mod = (await wabt()).parseWat("gemm.wat", readFileSync(WAT, "utf8"), features);
      try {
        // wabt validates with default features unless given them; its typings omit the parameter.
        (mod.validate as (f: typeof features) => void).call(mod, features);
        return WebAssembly.compile(mod.toBinary({}).buffer);
      } finally {
        mod.destroy();
      }
    } catch (e) {
      throw new PmaError(
        "BACKEND_UNAVAILABLE",
        `wasm backend: ${WASM} is missing and could not be built ` +
          `from ${WAT} (${e instanceof Error ? e.message : e}); run \`npm run build\``,
        { cause: e },
      );
    }
  })();
  compiled.catch(() => {
    compiled = undefined;
  });
  return compiled;
}

export function instantiate(mod: WebAssembly.Module, memory: WebAssembly.Memory): GemmKernels {
  const inst = new WebAssembly.Instance(mod, { env: { memory } });
  return inst.exports as unknown as GemmKernels;
}
