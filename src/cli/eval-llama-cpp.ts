/**
 * `pma eval --engine llama.cpp`, kept apart from eval.ts so that the default engine
 * never loads the llama.cpp code (or asks for node-llama-cpp).
 */
import { PmaError } from "../common/errors.js";
import type { EvalResult } from "../eval/evaluate.js";
import { closeLlamaCpp, type LlamaCppGpu } from "../eval/llama-cpp.js";
import { evaluateWithLlamaCpp, type ScoreTokensOptions } from "../eval/score-tokens.js";
import { parseGgufDtype } from "./convert.js";

const GPUS: readonly LlamaCppGpu[] = ["off", "auto", "cuda", "vulkan", "metal"];

export interface LlamaCppFlags {
  gpu?: string | undefined;
  threads?: string | undefined;
  dtype?: string | undefined;
}

export function llamaCppOptions(flags: LlamaCppFlags): Pick<ScoreTokensOptions, "gpu" | "threads" | "dtype"> {
  const out: Pick<ScoreTokensOptions, "gpu" | "threads" | "dtype"> = {};
  if (flags.gpu !== undefined) {
    const gpu = flags.gpu.toLowerCase() as LlamaCppGpu;
    if (!GPUS.includes(gpu))
      throw new PmaError("USAGE", `--gpu must be one of ${GPUS.join(", ")} (got '${flags.gpu}')`);
    out.gpu = gpu;
  }
  if (flags.threads !== undefined) {
    const n = Number(flags.threads);
    if (!Number.isInteger(n) || n < 1)
      throw new PmaError("USAGE", `--threads must be a positive integer (got '${flags.threads}')`);
    out.threads = n;
  }
  const dtype = parseGgufDtype(flags.dtype);
  if (dtype !== undefined) out.dtype = dtype;
  return out;
}

export async function evaluateCheckpointsWithLlamaCpp(
  paths: readonly string[],
  base: ScoreTokensOptions,
  flags: LlamaCppFlags,
  onResult: (r: EvalResult, path: string) => void,
): Promise<EvalResult[]> {
  const opts = { ...base, ...llamaCppOptions(flags) };
  const results: EvalResult[] = [];
  try {
    for (const path of paths) {
      const r = await evaluateWithLlamaCpp(path, opts);
      results.push(r);
      onResult(r, path);
    }
  } finally {
    await closeLlamaCpp();
  }
  return results;
}
