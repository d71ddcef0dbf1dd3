/**
 * node-llama-cpp, loaded only when asked for: it is an optional dependency (its
 * prebuilt llama.cpp binaries take several hundred MB), so pma builds, installs and
 * runs without it, and only `--engine llama.cpp` says how to install it.
 *
 * The few parts of its API pma uses are declared here instead of imported, so that
 * TypeScript compiles pma on a machine where the package was left out; `loadNodeLlamaCpp`
 * checks at run time that the installed package has them.
 */
import { PmaError } from "../common/errors.js";

/** The version pma is tested with (package.json pins it). */
export const NODE_LLAMA_CPP_VERSION = "3.21.1";
export const NODE_LLAMA_CPP_INSTALL = `npm i -E node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`;

export type NlcLogLevel = "disabled" | "fatal" | "error" | "warn" | "info" | "log" | "debug";
export type NlcGpu = false | "auto" | "cuda" | "vulkan" | "metal";

export interface NlcProbabilityOutput {
  next: { probabilities?: Map<number, number> };
}

export interface NlcSequence {
  clearHistory(): Promise<void>;
  controlledEvaluate(
    input: [number, { generateNext: { probabilities: true } }][],
  ): Promise<(NlcProbabilityOutput | undefined)[]>;
}

export interface NlcContextOptions {
  contextSize: number;
  batchSize: number;
  sequences: number;
  threads: number;
  flashAttention: boolean;
  experimentalKvCacheKeyType: "F32" | "F16";
  experimentalKvCacheValueType: "F32" | "F16";
}

export interface NlcContext {
  readonly contextSize: number;
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
}

export interface NlcModel {
  readonly trainContextSize: number;
  createContext(opts: NlcContextOptions): Promise<NlcContext>;
  dispose(): Promise<void>;
}

export interface NlcLlama {
  readonly gpu: string | false;
  readonly buildType: string;
  loadModel(opts: { modelPath: string; gpuLayers?: number | "max" }): Promise<NlcModel>;
  dispose(): Promise<void>;
}

export interface NlcLlamaOptions {
  gpu: NlcGpu;
  build: "never";
  usePrebuiltBinaries: true;
  skipDownload: true;
  progressLogs: false;
  logLevel: NlcLogLevel;
  logger(level: NlcLogLevel, message: string): void;
  maxThreads: number;
}

export interface NodeLlamaCpp {
  getLlama(opts: NlcLlamaOptions): Promise<NlcLlama>;
  /** `false` stands for the CPU build. */
  getLlamaGpuTypes(include: "supported" | "allValid"): Promise<(string | false)[]>;
  getModuleVersion(): Promise<string>;
}

/**
 * Imports node-llama-cpp (or `specifier`, for tests of the missing-package message).
 * A missing package is a BACKEND_UNAVAILABLE error that says how to install it.
 */
export async function loadNodeLlamaCpp(specifier = "node-llama-cpp"): Promise<NodeLlamaCpp> {
  let mod: unknown;
  try {
    // A computed specifier: TypeScript must not look for the optional package's types.
    mod = await import(specifier);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    if (code === "ERR_MODULE_NOT_FOUND" && (e as Error).message.includes(specifier)) {
      throw new PmaError(
        "BACKEND_UNAVAILABLE",
        `the llama.cpp engine needs the optional package ${specifier}, which is not installed; ` +
          `install it in pma's folder with \`${NODE_LLAMA_CPP_INSTALL}\` (prebuilt CPU and CUDA binaries come from npm), or use --engine pma`,
        { cause: e },
      );
    }
    throw new PmaError(
      "BACKEND_UNAVAILABLE",
      `${specifier} could not be loaded: ${(e as Error).message}; reinstall it with \`${NODE_LLAMA_CPP_INSTALL}\``,
      { cause: e },
    );
  }
  const m = mod as Partial<Record<keyof NodeLlamaCpp, unknown>>;
  for (const f of ["getLlama", "getLlamaGpuTypes", "getModuleVersion"] as const) {
    if (typeof m[f] !== "function") {
      throw new PmaError(
        "BACKEND_UNAVAILABLE",
        `${specifier} has no ${f}(); pma needs version ${NODE_LLAMA_CPP_VERSION} (\`${NODE_LLAMA_CPP_INSTALL}\`)`,
      );
    }
  }
  return mod as NodeLlamaCpp;
}
