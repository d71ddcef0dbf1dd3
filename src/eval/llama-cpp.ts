/**
 * llama.cpp as a second, independent engine: loads a GGUF file through node-llama-cpp
 * and returns the log-probability llama.cpp gives each next token of a window, from
 * `controlledEvaluate` with the full next-token distribution at every position.
 *
 * Settings chosen so that differences from pma's engine come from the model and the
 * weight types, not from the harness: the prebuilt CPU binary unless a GPU is asked for
 * (never a download or a source build), an f32 KV cache (llama.cpp's default f16 cache
 * would round every key and value), no flash attention, one sequence whose history is
 * cleared before each window so every window starts at position 0 with no BOS, and the
 * default greedy sampler, which leaves the logits untouched (the probabilities are
 * softmax(logits) in float32).
 */
import { availableParallelism } from "node:os";
import { PmaError } from "../common/errors.js";
import {
  loadNodeLlamaCpp,
  type NlcContext,
  type NlcGpu,
  type NlcLlama,
  type NlcLogLevel,
  type NlcModel,
  type NlcSequence,
} from "./node-llama-cpp.js";
import type { TokenStream } from "../data/batches.js";
import type { WindowLogprobs } from "./token-logprobs.js";

export type LlamaCppGpu = "off" | "auto" | "cuda" | "vulkan" | "metal";

export interface LlamaCppOptions {
  /** Longest window scored (the context size). */
  seq: number;
  /** "off" (default): the CPU build, whose numbers are reproducible across machines. */
  gpu?: LlamaCppGpu;
  /** CPU threads (default: all cores). */
  threads?: number;
}

/** A sequence of tokens and the first position whose log-probability counts (>= 1). */
export interface SequenceRequest {
  readonly ids: ArrayLike<number>;
  readonly from: number;
}

const llamas = new Map<NlcGpu, Promise<NlcLlama>>();
/** llama.cpp's recent log lines, quoted when loading a model fails (its own reason is only logged). */
const recentLog: string[] = [];

function nlcGpu(gpu: LlamaCppGpu): NlcGpu {
  return gpu === "off" ? false : gpu;
}

async function getLlamaFor(gpu: LlamaCppGpu): Promise<NlcLlama> {
  const key = nlcGpu(gpu);
  let p = llamas.get(key);
  if (p === undefined) {
    p = (async () => {
      const nlc = await loadNodeLlamaCpp();
      try {
        return await nlc.getLlama({
          gpu: key,
          build: "never",
          usePrebuiltBinaries: true,
          skipDownload: true,
          progressLogs: false,
          logLevel: "warn",
          // Warnings such as "n_ctx_seq > n_ctx_train" (llama.cpp pads the context to 256)
          // are noise for scoring; keep them only to explain a failure.
          logger: (level: NlcLogLevel, message: string) => {
            recentLog.push(`${level}: ${message.trim()}`);
            if (recentLog.length > 20) recentLog.shift();
          },
          maxThreads: 0,
        });
      } catch (e) {
        throw new PmaError(
          "BACKEND_UNAVAILABLE",
          `node-llama-cpp has no usable llama.cpp build for gpu ${gpu === "off" ? "off (CPU)" : gpu}: ${(e as Error).message}`,
          { cause: e },
        );
      }
    })();
    llamas.set(key, p);
    p.catch(() => llamas.delete(key));
  }
  return p;
}

/** Releases every llama.cpp instance this process created (the next scorer starts a new one). */
export async function closeLlamaCpp(): Promise<void> {
  const all = [...llamas.values()];
  llamas.clear();
  await Promise.all(all.map(async (p) => (await p.catch(() => null))?.dispose()));
}

/** GPU kinds with prebuilt binaries and drivers on this machine ("cuda", "vulkan", ...). */
export async function llamaCppGpuTypes(): Promise<string[]> {
  const nlc = await loadNodeLlamaCpp();
  return (await nlc.getLlamaGpuTypes("supported")).filter((g): g is string => g !== false);
}

export class LlamaCppScorer {
  private constructor(
    readonly path: string,
    readonly seq: number,
    /** Human-readable engine description, e.g. "llama.cpp (node-llama-cpp 3.21.1, CPU, 2 threads)". */
    readonly description: string,
    private readonly model: NlcModel,
    private readonly context: NlcContext,
    private readonly sequence: NlcSequence,
  ) {}

  static async open(path: string, opts: LlamaCppOptions): Promise<LlamaCppScorer> {
    const gpu = opts.gpu ?? "off";
    const threads = opts.threads ?? availableParallelism();
    if (!Number.isInteger(opts.seq) || opts.seq < 1)
      throw new PmaError("USAGE", `seq must be a positive integer, got ${opts.seq}`);
    const llama = await getLlamaFor(gpu);
    recentLog.length = 0;
    let model: NlcModel;
    try {
      model = await llama.loadModel({
        modelPath: path,
        ...(gpu === "off" ? {} : { gpuLayers: "max" as const }),
      });
    } catch (e) {
      // node-llama-cpp may try twice: each reason once.
      const why = [...new Set(recentLog.filter((l) => !l.startsWith("warn")))].slice(-4).join("; ");
      throw new PmaError(
        "GGUF_INVALID",
        `${path}: llama.cpp cannot load this file: ${(e as Error).message}${why === "" ? "" : ` (llama.cpp: ${why})`}`,
        { file: path, cause: e },
      );
    }
    try {
      const context = await model.createContext({
        // One slot more than the longest window: node-llama-cpp shifts a full context
        // (drops its first tokens) before evaluating the last token that fits, which
        // would change the last position's log-probability.
        contextSize: opts.seq + 1,
        batchSize: opts.seq,
        sequences: 1,
        threads,
        flashAttention: false,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
      });
      const nlc = await loadNodeLlamaCpp();
      const version = await nlc.getModuleVersion();
      const device =
        llama.gpu === false
          ? `CPU, ${threads} thread${threads === 1 ? "" : "s"}`
          : String(llama.gpu).toUpperCase();
      return new LlamaCppScorer(
        path,
        opts.seq,
        `llama.cpp (node-llama-cpp ${version}, ${llama.buildType} ${device})`,
        model,
        context,
        context.getSequence(),
      );
    } catch (e) {
      await model.dispose();
      throw e instanceof PmaError
        ? e
        : new PmaError(
            "BACKEND_UNAVAILABLE",
            `${path}: llama.cpp could not create a context of ${opts.seq} tokens: ${(e as Error).message}`,
            { file: path, cause: e },
          );
    }
  }

  /**
   * log p(ids[t] | ids[0..t-1]) for t = 1 .. ids.length - 1 (so ids.length - 1 values),
   * from a fresh context: position 0 is ids[0], nothing is prepended.
   */
  async logprobs(ids: ArrayLike<number>): Promise<Float64Array> {
    const n = ids.length - 1;
    if (n < 1 || n > this.seq)
      throw new PmaError(
        "USAGE",
        `llama.cpp scores 2 to ${this.seq + 1} tokens at a time, got ${ids.length}`,
      );
    await this.sequence.clearHistory();
    const input: [number, { generateNext: { probabilities: true } }][] = [];
    for (let t = 0; t < n; t++) input.push([ids[t]!, { generateNext: { probabilities: true } }]);
    const res = await this.sequence.controlledEvaluate(input);
    const out = new Float64Array(n);
    for (let t = 0; t < n; t++) {
      const probs = res[t]?.next.probabilities;
      if (probs === undefined)
        throw new PmaError("INTERNAL", `${this.path}: llama.cpp returned no distribution at position ${t}`);
      // A token absent from the map, or a probability that underflowed float32, is -Infinity: reported, not hidden.
      out[t] = Math.log(probs.get(ids[t + 1]!) ?? 0);
    }
    return out;
  }

  /** Scores the held-out windows at `windows` (each seq inputs plus the next token). */
  async windowLogprobs(stream: TokenStream, windows: Uint32Array, seq = this.seq): Promise<WindowLogprobs> {
    const out = new Float64Array(windows.length * seq);
    for (let w = 0; w < windows.length; w++) {
      const o = windows[w]!;
      out.set(await this.logprobs(stream.subarray(o, o + seq + 1)), w * seq);
    }
    return { windows, seq, logprobs: out };
  }

  /** Sum of log-probabilities from `from` on, for each request (the zero-shot tasks' currency). */
  async sumLogprobs(requests: readonly SequenceRequest[]): Promise<Float64Array> {
    const out = new Float64Array(requests.length);
    for (let i = 0; i < requests.length; i++) {
      const r = requests[i]!;
      if (!Number.isInteger(r.from) || r.from < 1 || r.from >= r.ids.length) {
        throw new PmaError("USAGE", `request ${i}: from must be in 1..${r.ids.length - 1}, got ${r.from}`);
      }
      const lp = await this.logprobs(r.ids);
      let s = 0;
      for (let t = r.from - 1; t < lp.length; t++) s += lp[t]!;
      out[i] = s;
    }
    return out;
  }

  async close(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
  }
}
