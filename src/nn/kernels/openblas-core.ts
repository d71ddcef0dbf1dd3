import { readFileSync } from "node:fs";

/**
 * OpenBLAS builds with DYNAMIC_ARCH (Debian's) pick their kernels from the CPU's
 * family and model numbers. A CPU newer than the library, or a virtual machine that
 * reports a generic model ("Intel(R) Xeon(R) Processor"), falls back to the oldest x86-64
 * kernel, Prescott (SSE3): on a 2-core AVX-512 machine Debian's OpenBLAS 0.3.21 did that,
 * and pma trained at half speed (1,590 tokens/s against 3,440 with the Cooperlake kernel).
 * The instruction sets the CPU reports are what the kernels need, so the core type is
 * chosen from them, once, before the library loads (OpenBLAS reads OPENBLAS_CORETYPE
 * when it is loaded; child processes inherit it).
 */

/** The newest OpenBLAS x86-64 kernel whose instructions `flags` (from /proc/cpuinfo) all include; null: leave it to OpenBLAS. */
export function openblasCoreForFlags(flags: ReadonlySet<string>): string | null {
  const has = (...names: string[]): boolean => names.every((n) => flags.has(n));
  // Cooperlake: the SkylakeX kernels plus bf16 dot products.
  if (has("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16")) return "Cooperlake";
  if (has("avx512f", "avx512bw", "avx512vl", "avx512dq")) return "SkylakeX";
  if (has("avx2", "fma")) return "Haswell";
  if (has("avx")) return "SandyBridge";
  return null;
}

/** The flags of the first processor in a /proc/cpuinfo text. */
export function cpuinfoFlags(cpuinfo: string): Set<string> {
  const line = /^flags\s*:(.*)$/m.exec(cpuinfo);
  return new Set((line?.[1] ?? "").trim().split(/\s+/).filter(Boolean));
}

/**
 * Sets OPENBLAS_CORETYPE from the CPU's flags unless the user set it; returns the core
 * type chosen, or null when nothing was set (another OS or architecture, a user's choice,
 * or a CPU without AVX, where OpenBLAS's own choice stands).
 */
export function hintOpenblasCore(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.OPENBLAS_CORETYPE !== undefined && env.OPENBLAS_CORETYPE !== "") return null;
  if (process.platform !== "linux" || process.arch !== "x64") return null;
  let cpuinfo: string;
  try {
    cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return null;
  }
  const core = openblasCoreForFlags(cpuinfoFlags(cpuinfo));
  if (core !== null) env.OPENBLAS_CORETYPE = core;
  return core;
}
