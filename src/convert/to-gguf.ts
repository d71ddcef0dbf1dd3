/**
 * `pma convert CKPT --to gguf`: a Llama or Mixtral checkpoint folder (pma's own, a
 * `pma merge` output, or a Hugging Face folder with a byte-level BPE tokenizer.json) to
 * one GGUF file that llama.cpp loads, tensor by tensor, so memory stays at about the
 * largest tensor. The file is written atomically (GgufWriter: temporary sibling,
 * fsync, rename); an existing file is replaced only with `force`.
 *
 * Weights keep their stored dtype unless one is asked for. Norm gains and the MoE
 * router are always f32 (widening is exact), as llama.cpp's own converter does.
 */
import { readFile, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { openCheckpointTensors, type CheckpointTensor } from "../formats/checkpoint-files.js";
import { ggufDims, GgufWriter, type GgufTensorSpec } from "../formats/gguf-writer.js";
import type { GgufMetadata } from "../formats/gguf-values.js";
import { fromHfConfig, isMoe, type ModelConfig } from "../nn/config.js";
import { decodeFloats, encodeFloats, floatDTypeBytes } from "../tensor/codec.js";
import { isFloatDType, type FloatDType } from "../tensor/dtype.js";
import { loadTokenizer } from "../data/tokenizer-json.js";
import {
  GGUF_FILE_TYPE,
  IGNORED_CHECKPOINT_TENSORS,
  llamaGgufHyperparameters,
  llamaGgufTensors,
  permuteRotaryRows,
  type GgufTensorSource,
} from "./gguf-llama.js";
import { ggufVocabMetadata } from "./gguf-vocab.js";
import { numel } from "../tensor/shape.js";

export type GgufWeightDtype = keyof typeof GGUF_FILE_TYPE;

export interface ConvertToGgufOptions {
  /** Output file; default `<checkpoint>-<DTYPE>.gguf` beside the checkpoint folder. */
  out?: string;
  /** Type of the weight matrices; default the checkpoint's stored dtype. */
  dtype?: GgufWeightDtype;
  force?: boolean;
  /** general.name; default the checkpoint folder's name. */
  name?: string;
  /** Called after each tensor with bytes written so far and in all. */
  onProgress?(done: number, total: number): void;
}

export interface ConvertToGgufResult {
  checkpoint: string;
  out: string;
  architecture: "LlamaForCausalLM" | "MixtralForCausalLM";
  /** Type of the weight matrices (general.file_type). */
  dtype: GgufWeightDtype;
  tensors: number;
  parameters: number;
  bytes: number;
  vocabSize: number;
  seconds: number;
}

/** Reads config.json, refusing Llama variants the "llama" GGUF keys written here cannot describe. */
async function readConvertibleConfig(dir: string): Promise<ModelConfig> {
  const path = join(dir, "config.json");
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new PmaError(
      "CONFIG_INVALID",
      `${path}: cannot read a JSON config (${(e as Error).message}); converting needs the checkpoint's config.json`,
      { file: path, cause: e },
    );
  }
  const o = json !== null && typeof json === "object" ? (json as Record<string, unknown>) : {};
  const unsupported = (what: string): PmaError =>
    new PmaError(
      "FORMAT_UNSUPPORTED",
      `${path}: ${what}; pma converts plain Llama / Mixtral models (no rope scaling, no biases)`,
      { file: path },
    );
  if (o["rope_scaling"] !== undefined && o["rope_scaling"] !== null)
    throw unsupported(`rope_scaling is ${JSON.stringify(o["rope_scaling"])}`);
  for (const k of ["attention_bias", "mlp_bias"]) if (o[k] === true) throw unsupported(`${k} is true`);
  try {
    return fromHfConfig(json);
  } catch (e) {
    throw new PmaError("CONFIG_INVALID", `${path}: ${(e as Error).message}`, { file: path, cause: e });
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

interface PlannedTensor extends GgufTensorSource {
  type: "F32" | "F16" | "BF16";
  sources: CheckpointTensor[];
}

/** Matches checkpoint tensors to the GGUF plan and picks each tensor's output type. */
function planTensors(
  dir: string,
  c: ModelConfig,
  found: Map<string, CheckpointTensor>,
  dtype: GgufWeightDtype | undefined,
): PlannedTensor[] {
  const plan = llamaGgufTensors(c);
  const used = new Set<string>();
  const planned = plan.map((t): PlannedTensor => {
    const partShape = t.parts.length === 1 ? t.shape : t.shape.slice(1);
    const sources = t.parts.map((name) => {
      const s = found.get(name);
      if (s === undefined)
        throw new PmaError(
          "TENSOR_NOT_FOUND",
          `${dir}: tensor "${name}" is missing; config.json describes a model that needs it`,
          { file: dir },
        );
      if (!sameShape(s.shape, partShape)) {
        throw new PmaError(
          "CHECKPOINT_MISMATCH",
          `${s.file.path}: tensor "${name}" has shape [${s.shape.join(", ")}], config.json implies [${partShape.join(", ")}]`,
          { file: s.file.path },
        );
      }
      if (!isFloatDType(s.dtype))
        throw new PmaError(
          "DTYPE_UNSUPPORTED",
          `${s.file.path}: tensor "${name}" is ${s.dtype}; weights must be F32, BF16 or F16`,
          { file: s.file.path },
        );
      used.add(name);
      return s;
    });
    const stored = new Set(sources.map((s) => s.dtype as FloatDType));
    if (stored.has("F64") && dtype === undefined) {
      throw new PmaError(
        "DTYPE_UNSUPPORTED",
        `${dir}: "${t.parts[0]}" is F64, which llama.cpp cannot multiply; pass --dtype f32 (or f16/bf16)`,
        { file: dir },
      );
    }
    return { ...t, type: t.keepF32 ? "F32" : (dtype ?? storedWeightType(dir, t, stored)), sources };
  });
  const extra = [...found.keys()].filter(
    (n) =>
      !used.has(n) &&
      !IGNORED_CHECKPOINT_TENSORS.test(n) &&
      !(n === "lm_head.weight" && c.tie_word_embeddings),
  );
  if (extra.length > 0) {
    const shown = extra
      .slice(0, 5)
      .map((n) => `"${n}"`)
      .join(", ");
    throw new PmaError(
      "CHECKPOINT_MISMATCH",
      `${dir}: ${extra.length} tensor(s) have no place in a ${isMoe(c) ? "Mixtral" : "Llama"} GGUF: ${shown}${extra.length > 5 ? ", ..." : ""}`,
      { file: dir },
    );
  }
  return planned;
}

/** The one stored type of a tensor's parts (F64 was refused before). */
function storedWeightType(dir: string, t: GgufTensorSource, stored: Set<FloatDType>): GgufWeightDtype {
  if (stored.size !== 1) {
    throw new PmaError(
      "DTYPE_UNSUPPORTED",
      `${dir}: the parts of "${t.name}" are stored as ${[...stored].join(" and ")}; pass --dtype to choose one`,
      { file: dir },
    );
  }
  return [...stored][0] as GgufWeightDtype;
}

/** Reads, transforms and encodes one GGUF tensor part; returns its bytes. */
async function encodePart(t: PlannedTensor, s: CheckpointTensor): Promise<Uint8Array> {
  const raw = await s.file.read(s.name);
  const n = numel(s.shape);
  if (t.transform.kind === "none" && s.dtype === t.type) return raw;
  let values = new Float32Array(n);
  decodeFloats(raw, s.dtype as FloatDType, values);
  if (t.transform.kind === "rotary") {
    const rows = s.shape[0]!;
    values = permuteRotaryRows(values, t.transform.heads, rows / t.transform.heads, s.shape[1]!);
  }
  const out = new Uint8Array(n * floatDTypeBytes(t.type));
  encodeFloats(values, t.type, out);
  return out;
}

export function defaultGgufPath(checkpoint: string, dtype: GgufWeightDtype): string {
  return `${resolve(checkpoint)}-${dtype}.gguf`;
}

export async function convertToGguf(
  checkpoint: string,
  opts: ConvertToGgufOptions = {},
): Promise<ConvertToGgufResult> {
  const t0 = performance.now();
  const dir = resolve(checkpoint);
  const st = await stat(dir).catch(() => null);
  if (st === null || !st.isDirectory()) {
    throw new PmaError(
      "USAGE",
      `${dir}: not a checkpoint folder; conversion needs the folder with config.json, tokenizer.json and the safetensors weights`,
      { file: dir },
    );
  }
  const config = await readConvertibleConfig(dir);
  const tokenizer = loadTokenizer(join(dir, "tokenizer.json"));
  const ck = await openCheckpointTensors(dir);
  try {
    const tensors = planTensors(dir, config, ck.tensors, opts.dtype);
    const fileType = tensors[0]!.type; // token_embd: the largest matrix, the file's type
    const out = resolve(opts.out ?? defaultGgufPath(dir, fileType));
    const metadata: GgufMetadata = new Map([
      ...llamaGgufHyperparameters(config, opts.name ?? basename(dir), fileType),
      ...ggufVocabMetadata(tokenizer, config.vocab_size, {
        bos: config.bos_token_id,
        eos: config.eos_token_id,
      }),
    ]);
    const specs: GgufTensorSpec[] = tensors.map((t) => ({
      name: t.name,
      type: t.type,
      dims: ggufDims(t.shape),
    }));
    const writer = await GgufWriter.create(out, metadata, specs, { force: opts.force ?? false });
    let done = 0;
    const total = writer.header.dataLength;
    try {
      for (const t of tensors) {
        let offset = 0;
        for (const s of t.sources) {
          const bytes = await encodePart(t, s);
          await writer.write(t.name, offset, bytes);
          offset += bytes.length;
        }
        done += offset;
        opts.onProgress?.(done, total);
      }
      await writer.finish();
    } catch (e) {
      await writer.abort();
      throw e;
    }
    return {
      checkpoint: dir,
      out,
      architecture: isMoe(config) ? "MixtralForCausalLM" : "LlamaForCausalLM",
      dtype: fileType,
      tensors: tensors.length,
      parameters: tensors.reduce((a, t) => a + numel(t.shape), 0),
      bytes: writer.fileSize,
      vocabSize: config.vocab_size,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await ck.close();
  }
}
