// OpenBLAS core type from the CPU's flags (nn/kernels/openblas-core.ts): the mapping on
// flag lines of real CPUs, the user's OPENBLAS_CORETYPE winning, and, on this machine, a
// loaded OpenBLAS that runs a kernel using the vector units the CPU has.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { cpuinfoFlags, hintOpenblasCore, openblasCoreForFlags } from "../src/nn/kernels/openblas-core.js";

// Flag lines as /proc/cpuinfo prints them (abridged to the vector extensions and a few others).
const SAPPHIRE_RAPIDS =
  "flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq " +
  "avx512ifma avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512vbmi avx512_fp16";
const SKYLAKE_SP =
  "flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl";
const ZEN2 = "flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 sha_ni";
const IVY_BRIDGE = "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c";
const CORE2 = "flags\t\t: fpu sse sse2 ssse3";

test("core type from CPU flags: the newest kernel whose instructions the CPU has", () => {
  const core = (line: string): string | null =>
    openblasCoreForFlags(cpuinfoFlags(`processor\t: 0\n${line}\n`));
  assert.equal(core(SAPPHIRE_RAPIDS), "Cooperlake");
  assert.equal(core(SKYLAKE_SP), "SkylakeX");
  assert.equal(core(ZEN2), "Haswell");
  assert.equal(core(IVY_BRIDGE), "SandyBridge");
  assert.equal(core(CORE2), null);
  assert.equal(core(""), null);
  // Only the first processor's line counts, and "avx2" is not read as "avx" + "2".
  assert.equal(core(`${CORE2}\nflags\t\t: avx avx2 fma`), null);
});

test("a user's OPENBLAS_CORETYPE is left alone", () => {
  const env: NodeJS.ProcessEnv = { OPENBLAS_CORETYPE: "Haswell" };
  assert.equal(hintOpenblasCore(env), null);
  assert.equal(env.OPENBLAS_CORETYPE, "Haswell");
});

// The library itself, in a fresh process (OpenBLAS reads its core type once, when loaded).
const flags = (() => {
  try {
    return cpuinfoFlags(readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return new Set<string>();
  }
})();
const SSE_ONLY_KERNELS = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai"];

test(
  "the blas backend runs a kernel that uses the CPU's vector width",
  { skip: flags.has("avx2") ? false : "this CPU has no AVX2" },
  (t) => {
    const backends = fileURLToPath(new URL("../src/nn/kernels/index.js", import.meta.url));
    const script =
      `const { getBackend } = await import(${JSON.stringify(backends)});` +
      `try { const b = await getBackend("blas"); console.log(b.config); b.dispose(); }` +
      `catch (e) { console.log("UNAVAILABLE " + e.message); }`;
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { env, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const config = r.stdout.trim();
    if (config.startsWith("UNAVAILABLE")) {
      if (process.env.PMA_REQUIRE_BLAS === "1") assert.fail(config);
      t.skip(config);
      return;
    }
    const kernel = /\(kernel (\w+)/.exec(config)?.[1];
    assert.ok(kernel !== undefined, config);
    assert.ok(
      !SSE_ONLY_KERNELS.includes(kernel),
      `OpenBLAS runs the ${kernel} kernel on an AVX2 CPU: ${config}`,
    );
  },
);
