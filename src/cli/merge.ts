import { PmaError } from "../common/errors.js";
import { parseBytes } from "../common/units.js";
import { finalizeMerge } from "../merge/finalize.js";
import { merge, type MergeRecord } from "../merge/merger.js";
import type { PartSpec } from "../merge/part-output.js";
import { describeParams } from "../merge/methods.js";
import type { FloatDType } from "../tensor/dtype.js";
import { parseCommandArgs, type Command } from "./command.js";
import { MERGE_RUN_OPTIONS, mergeRunFromFlags } from "./merge-flags.js";
import { METHOD_OPTIONS, METHOD_USAGE, METHODS_HELP, methodFromFlags } from "./method-flags.js";
import { describePlan } from "./plan.js";
import { planFromFlags, RUN_OPTIONS, RUN_USAGE } from "./run-flags.js";
import { interruptSignal } from "./interrupt.js";
import { byteProgress } from "./progress.js";

const usage = `usage: pma merge CKPT... --out DIR [options]
       pma merge --run RUN --interval V [--count N] --out DIR [options]
       pma merge CKPT... --out DIR --part I/N [options]     (one of N processes)
       pma merge --finalize DIR [--force]                   (after all N parts)

Merges checkpoints of one training run into one: out = sum_i c_i * M_i, streamed
chunk by chunk (memory does not grow with model size). Checkpoints are ordered by
training progress (tokens in trainer_state.json, else the step in their name).

With --run, the checkpoints are chosen as \`pma plan\` chooses them.

GGUF files (F32/F16/BF16 tensors, not quantized) merge into one GGUF file: give
--out a .gguf path. Its metadata comes from the newest input, plus pma.* provenance;
GGUF files are ordered by the step in their name (checkpoint-1200.gguf), else as given.

A checkpoint may be remote: hf://owner/repo@revision, s3://bucket/prefix, or an
https:// file; --out may be s3://bucket/prefix (published atomically). Credentials come
from HF_TOKEN and the AWS SDK's own configuration (see README, Remote checkpoints).

options:
  --out DIR             output folder (Hugging Face layout) or s3://bucket/prefix, or FILE.gguf for GGUF inputs;
                        must not exist unless --force
${METHOD_USAGE}
  --dtype D             output dtype for float tensors: bf16 | f16 | f32 | f64 (default: as input)
  --accumulate P        f64 (default; exact: identical inputs merge to themselves) | f32
  --shard-size S        largest output shard, e.g. 500MB, 2GiB (default 5GB; not for GGUF)
  --allow-nonfinite     merge even when an input holds NaN/Inf (reported)
  --keep-order          merge in the order given (oldest first) instead of by progress
  --optimizer P         distributed checkpoints: copy (default) the newest input's optimizer
                        state, or merge its exp_avg / exp_avg_sq with the same coefficients
  --threads N           worker threads (default: all cores)
  --force               replace an existing output
  --json                print the merge record as JSON
  --part I/N            merge only share I (0-based) of N, beside the other parts (other
                        machines, a Slurm array or a Kubernetes Indexed Job); every part
                        takes the same checkpoints and options; shares are balanced by bytes
                        (with --out s3://..., whole shards: use a --shard-size for 4+ per part)
  --finalize DIR        once every part finished: check them, write the index, config and
                        pma_merge.json, and publish DIR (bit-identical to a one-process merge)
  --run RUN             choose the checkpoints from a run directory (see pma plan):
${RUN_USAGE}

methods:
${METHODS_HELP}

example:
  pma merge run/checkpoint-1000 run/checkpoint-2000 run/checkpoint-3000 --out merged --method ema --alpha 0.2
  pma merge gguf/checkpoint-1000.gguf gguf/checkpoint-2000.gguf --out merged.gguf --dtype f16
  pma merge run/checkpoint-* --out merged --part 0/4   # ... and 1/4, 2/4, 3/4 elsewhere
  pma merge --finalize merged
  pma merge hf://EleutherAI/pythia-160m@step142000 hf://EleutherAI/pythia-160m@step143000 --out s3://bucket/merged`;

const DTYPES: Record<string, FloatDType> = { bf16: "BF16", f16: "F16", f32: "F32", f64: "F64" };

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        out: { type: "string", short: "o" },
        ...METHOD_OPTIONS,
        ...RUN_OPTIONS,
        ...MERGE_RUN_OPTIONS,
        run: { type: "string" },
        dtype: { type: "string" },
        "shard-size": { type: "string" },
        "allow-nonfinite": { type: "boolean" },
        "keep-order": { type: "boolean" },
        optimizer: { type: "string" },
        force: { type: "boolean" },
        json: { type: "boolean" },
        part: { type: "string" },
        finalize: { type: "string" },
      },
      usage,
    );
    if (values.finalize !== undefined) {
      if (
        positionals.length > 0 ||
        values.out !== undefined ||
        values.part !== undefined ||
        values.run !== undefined
      ) {
        throw new PmaError(
          "USAGE",
          "--finalize DIR takes no checkpoints, --out, --part or --run: the parts recorded them",
        );
      }
      const record = await finalizeMerge({
        out: values.finalize,
        force: values.force ?? false,
        onNote: (note) => process.stderr.write(`pma: note: ${note}\n`),
      });
      process.stdout.write(
        values.json ? JSON.stringify(record, null, 2) + "\n" : describeMerge(record, values.finalize),
      );
      return 0;
    }
    if (values.out === undefined) throw new PmaError("USAGE", `--out DIR is required\n\n${usage}`);
    const method = methodFromFlags(values);
    let inputs = positionals;
    let keepOrder = values["keep-order"] ?? false;
    if (values.run !== undefined) {
      if (positionals.length > 0)
        throw new PmaError("USAGE", "give either checkpoints or --run RUN, not both");
      const planned = await planFromFlags(values.run, values, method);
      process.stderr.write(describePlan(planned).split("\n").slice(0, -3).join("\n") + "\n");
      inputs = planned.plan.selected.map((c) => c.path);
      keepOrder = true;
    } else if (values.interval !== undefined || values.count !== undefined) {
      throw new PmaError("USAGE", "--interval and --count choose checkpoints from a run: add --run RUN");
    }
    if (inputs.length === 0) throw new PmaError("USAGE", `no checkpoints given\n\n${usage}`);
    const dtype = values.dtype === undefined ? undefined : DTYPES[values.dtype.toLowerCase()];
    if (values.dtype !== undefined && dtype === undefined) {
      throw new PmaError("USAGE", `--dtype must be one of bf16, f16, f32, f64 (got '${values.dtype}')`);
    }
    if (values.optimizer !== undefined && values.optimizer !== "copy" && values.optimizer !== "merge") {
      throw new PmaError("USAGE", `--optimizer must be copy or merge (got '${values.optimizer}')`);
    }
    const mergeRun = mergeRunFromFlags(values);
    const progress = byteProgress("merge");
    const interrupt = interruptSignal();
    let record: MergeRecord;
    try {
      record = await merge({
        inputs,
        out: values.out,
        method,
        ...(dtype !== undefined ? { dtype } : {}),
        ...mergeRun,
        ...(values["shard-size"] !== undefined
          ? { shardSize: parseBytes(values["shard-size"], "--shard-size") }
          : {}),
        allowNonfinite: values["allow-nonfinite"] ?? false,
        force: values.force ?? false,
        keepOrder,
        ...(values.optimizer !== undefined ? { optimizer: values.optimizer as "copy" | "merge" } : {}),
        onProgress: (done, total) => progress.update(done, total),
        onNote: (note) => process.stderr.write(`pma: note: ${note}\n`),
        signal: interrupt.signal,
        ...(values.part !== undefined ? { part: parsePart(values.part) } : {}),
      });
    } finally {
      progress.stop();
      interrupt.dispose();
    }
    if (values.json) {
      process.stdout.write(JSON.stringify(record, null, 2) + "\n");
    } else {
      process.stdout.write(describeMerge(record, values.out));
    }
    return 0;
  },
};

/** `I/N` with 0 <= I < N. */
export function parsePart(text: string): PartSpec {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(count) && count >= 1 && index < count)) {
    throw new PmaError("USAGE", `--part must be I/N with 0 <= I < N, e.g. --part 0/4 (got '${text}')`);
  }
  return { index, count };
}

/** "1 file", "15 shards and the index": the index is not a shard. */
function filesText(files: readonly string[]): string {
  const index = files.filter((f) => f.endsWith(".index.json")).length;
  const weights = files.length - index;
  if (index === 0) return `${weights} file${weights === 1 ? "" : "s"}`;
  return `${weights} shard${weights === 1 ? "" : "s"} and the index`;
}

export function describeMerge(r: MergeRecord, out: string): string {
  const lines = [
    `merged ${r.inputs.length} checkpoint(s) with ${r.method.toUpperCase()}${describeParams(r.method, r)}, ordered by ${r.order_basis}:`,
    ...r.inputs.map((i) => {
      const where = [
        i.step !== null ? `step ${i.step}` : null,
        i.tokens !== null ? `${i.tokens} tokens` : null,
      ]
        .filter(Boolean)
        .join(", ");
      return `  ${i.coefficient.toFixed(6)}  ${i.path}${where ? `  (${where})` : ""}`;
    }),
    r.part !== undefined
      ? `wrote part ${r.part.index}/${r.part.count} of ${out}: ${(r.bytes_written / 2 ** 20).toFixed(1)} MiB into ${r.files.length} shard file(s); finish with pma merge --finalize ${out} once all ${r.part.count} parts are done`
      : `wrote ${out}: ${r.tensors} tensors, ${r.parameters.toLocaleString("en-US")} parameters, ${(r.bytes_written / 2 ** 20).toFixed(1)} MiB in ${filesText(r.files)}, dtype ${r.dtype}, accumulated in ${r.accumulate}${r.adapter === true ? "; a PEFT adapter (adapter_model.safetensors with adapter_config.json)" : ""}`,
    `read ${(r.bytes_read / 2 ** 30).toFixed(2)} GiB in ${r.seconds.toFixed(2)} s (${(r.bytes_read / 2 ** 30 / Math.max(r.seconds, 1e-9)).toFixed(2)} GiB/s)`,
  ];
  if (r.parts !== undefined) {
    lines.push(
      `assembled from ${r.parts.length} part(s); the slowest took ${Math.max(...r.parts.map((p) => p.seconds)).toFixed(2)} s`,
    );
  }
  for (const n of r.nonfinite)
    lines.push(
      `warning: ${n.count} NaN/Inf value(s) in "${n.tensor}" of ${n.checkpoint ?? "the merged result"}`,
    );
  return lines.join("\n") + "\n";
}
