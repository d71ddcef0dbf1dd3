/**
 * Model weights between the engine's flat f32 parameters and Hugging Face folders:
 * reading any checkpoint pma can open (pma's own, a merge, sharded, f32/bf16/f16) into
 * named f32 tensors, and encoding parameters for the safetensors writer.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { openCheckpointTensors } from "../formats/checkpoint-files.js";
import type { TensorData } from "../formats/safetensors-writer.js";
import { encodeFloats, decodeFloats } from "../tensor/codec.js";
import { isFloatDType, type FloatDType } from "../tensor/dtype.js";
import type { ModelConfig } from "../nn/config.js";
import { fromHfConfig } from "../nn/config.js";
import type { NamedTensor } from "../nn/params.js";
import type { CheckpointDtype } from "./config.js";
import { numel } from "../tensor/shape.js";

export const SAFETENSORS_DTYPE: Record<CheckpointDtype, FloatDType> = { f32: "F32", bf16: "BF16" };
export const TORCH_DTYPE: Record<CheckpointDtype, "float32" | "bfloat16"> = {
  f32: "float32",
  bf16: "bfloat16",
};

/** Reads `dir/config.json` as a Llama or Mixtral model config. */
export async function readModelConfig(dir: string): Promise<ModelConfig> {
  const path = join(dir, "config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new PmaError(
      "IO",
      `${path}: cannot read (${(e as Error).message}); a checkpoint folder needs its config.json`,
      { file: path, cause: e },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PmaError("CONFIG_INVALID", `${path}: not valid JSON (${(e as Error).message})`, {
      file: path,
      cause: e,
    });
  }
  try {
    return fromHfConfig(json);
  } catch (e) {
    throw new PmaError("CONFIG_INVALID", `${path}: ${(e as Error).message}`, { file: path, cause: e });
  }
}

export interface LoadedWeights {
  tensors: Map<string, NamedTensor>;
  /** The stored dtype of the float tensors ("mixed" when they differ). */
  dtype: FloatDType | "mixed";
}

/**
 * Every tensor of a checkpoint (or of one .safetensors file) decoded to f32. Integer
 * tensors have no place in these models and are refused by name.
 */
export async function readWeights(
  path: string,
  opts: { only?: (name: string) => boolean } = {},
): Promise<LoadedWeights> {
  const ck = await openCheckpointTensors(path);
  try {
    const tensors = new Map<string, NamedTensor>();
    const dtypes = new Set<FloatDType>();
    for (const t of ck.tensors.values()) {
      if (opts.only !== undefined && !opts.only(t.name)) continue;
      if (!isFloatDType(t.dtype)) {
        throw new PmaError(
          "DTYPE_UNSUPPORTED",
          `${t.file.path}: tensor "${t.name}" is ${t.dtype}; model weights must be F32, BF16, F16 or F64`,
          { file: t.file.path },
        );
      }
      const bytes = await t.file.read(t.name);
      const data = new Float32Array(numel(t.shape));
      decodeFloats(bytes, t.dtype, data);
      tensors.set(t.name, { name: t.name, shape: [...t.shape], data });
      dtypes.add(t.dtype);
    }
    const dtype = dtypes.size === 1 ? [...dtypes][0]! : dtypes.size === 0 ? "F32" : "mixed";
    return { tensors, dtype };
  } finally {
    await ck.close();
  }
}

/** Named f32 tensors encoded as `dtype` for writeSafetensors (fresh buffers: safe to keep). */
export function encodeTensors(tensors: readonly NamedTensor[], dtype: FloatDType): TensorData[] {
  return tensors.map((t) => {
    const bytes = new Uint8Array(t.data.length * (dtype === "F32" ? 4 : dtype === "F64" ? 8 : 2));
    encodeFloats(t.data, dtype, bytes);
    return { name: t.name, dtype, shape: [...t.shape], data: bytes };
  });
}
