import { stat } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { StagedDir, writeFileAtomic } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { PMA_VERSION } from "../common/version.js";
import { isGgufPath } from "../formats/gguf.js";
import { ggmlTypeForDType } from "../formats/gguf-types.js";
import { gguf, type GgufMetadata } from "../formats/gguf-values.js";
import { GgufWriter, ggufDims } from "../formats/gguf-writer.js";
import { SafetensorsWriter, type TensorLayout, type TensorSpec } from "../formats/safetensors-writer.js";
import { torchDtypeName, type FloatDType } from "../tensor/dtype.js";
import { copyCompanions, copyRemoteCompanions } from "./companions.js";
import { S3Output } from "./s3-output.js";
import type { MergeInput } from "./inputs.js";
import type { AccumulatePrecision } from "./kernels.js";
import type { MergeRecord } from "./merger.js";
import { PartOutput, type PartSpec } from "./part-output.js";
import type { ElementRange } from "./partition.js";
import { outputWriterOptions } from "./shard-metadata.js";

/**
 * Where a merge goes. Inputs decide the format: safetensors checkpoints merge into a
 * Hugging Face folder, GGUF files into one GGUF file. Both fix their layout up front so
 * worker threads can write tensor bytes at known positions; both appear complete or
 * not at all.
 */
export type OutputFormat = "safetensors" | "gguf";

export interface OutputContext {
  /** Oldest first; the newest supplies metadata and companion files. */
  inputs: MergeInput[];
  method: string;
  coefficients: number[];
  /** Set when --dtype changed float tensors' dtype. */
  dtype?: FloatDType;
  shardSize?: number;
  /** PEFT adapters: written as one adapter_model.safetensors. */
  adapter?: boolean;
  /** What else decides the output's bytes; the parts of a partitioned merge must agree on it. */
  accumulate?: AccumulatePrecision;
  allowNonfinite?: boolean;
}

export interface OutputWriter {
  /** Absolute paths of the files that workers open for writing. */
  files: string[];
  /** Tensor names in the order their bytes follow each other in the output. */
  order: string[];
  layout(name: string): TensorLayout;
  write(name: string, byteOffset: number, data: Uint8Array): Promise<void>;
  /** The elements of a tensor this process writes; absent: all of every tensor. */
  owned?(name: string): ElementRange[];
  /** Set when this share of a partitioned merge was already written (a rerun): its record. */
  completed?: MergeRecord;
}

export interface MergeOutput {
  open(specs: TensorSpec[], ctx: OutputContext): Promise<OutputWriter>;
  /** Makes the tensor data durable; names the files written and where companions came from. */
  finish(): Promise<{ files: string[]; companionsFrom: string | null }>;
  /** Adds small files beside the weights (folder outputs only) and publishes atomically. */
  publish(extraFiles: Record<string, string>): Promise<void>;
  discard(): Promise<void>;
}

/** The output format for these inputs, refusing combinations that would surprise. */
export function outputFormatFor(
  inputs: string[],
  out: string,
  shardSize?: number,
  part?: PartSpec,
): OutputFormat {
  const ggufInputs = inputs.filter(isGgufPath);
  if (ggufInputs.length === 0) {
    if (isGgufPath(out)) {
      throw new PmaError(
        "USAGE",
        `--out ${out} names a GGUF file, but the inputs are safetensors checkpoints; a merge is written in its inputs' format (give --out a folder)`,
      );
    }
    return "safetensors";
  }
  if (ggufInputs.length !== inputs.length) {
    const other = inputs.find((p) => !isGgufPath(p))!;
    throw new PmaError(
      "USAGE",
      `cannot merge GGUF files with other checkpoints (${ggufInputs[0]} and ${other}); give inputs of one format`,
    );
  }
  if (!isGgufPath(out))
    throw new PmaError(
      "USAGE",
      `the inputs are GGUF files, so the merge is one GGUF file: give --out a path ending in .gguf (got ${out})`,
    );
  if (shardSize !== undefined)
    throw new PmaError(
      "USAGE",
      "--shard-size applies to safetensors output; a GGUF merge is written as one file",
    );
  if (part !== undefined)
    throw new PmaError(
      "USAGE",
      "--part applies to safetensors output; a GGUF merge is written as one file by one process",
    );
  return "gguf";
}

export async function createMergeOutput(
  format: OutputFormat,
  out: string,
  force: boolean,
  signal?: AbortSignal,
  part?: PartSpec,
): Promise<MergeOutput> {
  if (part !== undefined) return PartOutput.create(out, force, part, signal);
  if (out.startsWith("s3://"))
    return S3Output.create(out, force, (local) => createMergeOutput(format, local, true), signal);
  return format === "gguf" ? GgufOutput.create(out, force) : SafetensorsOutput.create(out, force);
}

class SafetensorsOutput implements MergeOutput {
  private writer: SafetensorsWriter | null = null;
  private newest: MergeInput | null = null;
  private dtype: FloatDType | undefined;

  private constructor(private readonly staged: StagedDir) {}

  static async create(out: string, force: boolean): Promise<SafetensorsOutput> {
    return new SafetensorsOutput(await StagedDir.create(out, force));
  }

  async open(specs: TensorSpec[], ctx: OutputContext): Promise<OutputWriter> {
    const writer = await SafetensorsWriter.create(this.staged.staging, specs, outputWriterOptions(ctx));
    this.writer = writer;
    this.newest = ctx.inputs[ctx.inputs.length - 1]!;
    this.dtype = ctx.dtype;
    return {
      files: writer.plan.shards.map((s) => `${writer.dir}/${s.file}`),
      order: writer.plan.shards.flatMap((s) => s.tensors.map((t) => t.name)),
      layout: (name) => writer.layout(name),
      write: (name, byteOffset, data) => writer.write(name, byteOffset, data),
    };
  }

  async finish(): Promise<{ files: string[]; companionsFrom: string | null }> {
    const { files } = await this.writer!.finish();
    const newest = this.newest!;
    const torchDtype = this.dtype !== undefined ? torchDtypeName(this.dtype) : undefined;
    let companionsFrom: string | null;
    if (newest.remote !== undefined) {
      companionsFrom = newest.remote.isFolder ? newest.remote.uri : null;
      if (companionsFrom !== null) await copyRemoteCompanions(newest.remote, this.staged.staging, torchDtype);
    } else {
      companionsFrom = (await stat(newest.path)).isDirectory() ? newest.checkpoint.root : null;
      if (companionsFrom !== null) await copyCompanions(companionsFrom, this.staged.staging, torchDtype);
    }
    return { files: files.map((f) => f.slice(dirname(f).length + 1)), companionsFrom };
  }

  async publish(extraFiles: Record<string, string>): Promise<void> {
    for (const [name, text] of Object.entries(extraFiles))
      await writeFileAtomic(`${this.staged.staging}/${name}`, text);
    await this.staged.publish();
  }

  async discard(): Promise<void> {
    await this.writer?.abort();
    await this.staged.discard();
  }
}

/** llama.cpp's `general.file_type` (llama_ftype) for an all-float model of one dtype. */
const FILE_TYPE: Partial<Record<FloatDType, number>> = { F32: 0, F16: 1, BF16: 32 };

/**
 * The newest input's metadata (architecture, hyper-parameters, tokenizer: everything a
 * GGUF needs to load) with provenance appended under `pma.*`. The coefficients are
 * f64 so the record is exact; the count is u32 like llama.cpp's own counts.
 */
function mergedMetadata(ctx: OutputContext): GgufMetadata {
  const newest = ctx.inputs[ctx.inputs.length - 1]!.gguf!;
  const metadata: GgufMetadata = new Map(newest.metadata);
  if (ctx.dtype !== undefined) {
    // The file type describes the tensors; after --dtype the old value would be wrong.
    const fileType = FILE_TYPE[ctx.dtype];
    metadata.delete("general.file_type");
    if (fileType !== undefined) metadata.set("general.file_type", gguf.u32(fileType));
  }
  const provenance: [string, ReturnType<typeof gguf.string>][] = [
    ["pma.version", gguf.string(PMA_VERSION)],
    ["pma.method", gguf.string(ctx.method)],
    ["pma.coefficients", gguf.f64s(ctx.coefficients)],
    ["pma.inputs", gguf.u32(ctx.inputs.length)],
  ];
  for (const [key, value] of provenance) {
    metadata.delete(key);
    metadata.set(key, value);
  }
  return metadata;
}

class GgufOutput implements MergeOutput {
  private writer: GgufWriter | null = null;

  private constructor(
    private readonly path: string,
    private readonly force: boolean,
  ) {}

  static async create(out: string, force: boolean): Promise<GgufOutput> {
    const path = resolve(out);
    // Refused before any input is read, as the folder output does.
    if (
      !force &&
      (await stat(path).then(
        () => true,
        () => false,
      ))
    ) {
      throw new PmaError(
        "EXISTS",
        `${path} already exists; choose another --out or pass --force to replace it`,
        { file: path },
      );
    }
    return new GgufOutput(path, force);
  }

  async open(specs: TensorSpec[], ctx: OutputContext): Promise<OutputWriter> {
    const tensors = specs.map((s) => {
      const type = ggmlTypeForDType(s.dtype);
      if (type === undefined)
        throw new PmaError(
          "DTYPE_UNSUPPORTED",
          `${this.path}: tensor "${s.name}" has dtype ${s.dtype}, which GGUF cannot store.`,
        );
      // Inputs' shapes are their ggml dims reversed, so this restores the dims exactly.
      return { name: s.name, type: type.id, dims: ggufDims(s.shape) };
    });
    const writer = await GgufWriter.create(this.path, mergedMetadata(ctx), tensors, { force: this.force });
    this.writer = writer;
    return {
      files: [writer.tempPath],
      order: writer.order,
      layout: (name) => writer.layout(name),
      write: (name, byteOffset, data) => writer.write(name, byteOffset, data),
    };
  }

  async finish(): Promise<{ files: string[]; companionsFrom: string | null }> {
    // A GGUF carries its tokenizer and config in its metadata: there are no companions,
    // and the single file is published here, complete.
    await this.writer!.finish();
    return { files: [basename(this.path)], companionsFrom: null };
  }

  async publish(): Promise<void> {}

  async discard(): Promise<void> {
    await this.writer?.abort();
  }
}
