import { PmaError } from "../common/errors.js";
import { parseBytes } from "../common/units.js";
import { merge, type MergeRecord } from "../merge/merger.js";
import type { MethodSpec } from "../merge/weights.js";
import type { FloatDType } from "../tensor/dtype.js";
import { parseCommandArgs, type Command } from "./command.js";
import { interruptSignal } from "./interrupt.js";
import { byteProgress } from "./progress.js";

const usage = `usage: pma merge CKPT... --out DIR [options]

Merges checkpoints of one training run into one: out = sum_i c_i * M_i, streamed
chunk by chunk (memory does not grow with model size). Checkpoints are ordered by
training progress (tokens in trainer_state.json, else the step in their name).

options:
  --out DIR             output folder (Hugging Face layout); must not exist unless --force
  --method M            sma (default) | wma | ema
  --alpha A             EMA smoothing factor, default 0.2
  --weights W1,W2,...   custom weights, oldest checkpoint first (implies --method custom)
  --no-normalize        use --weights as given instead of scaling them to sum 1
  --dtype D             output dtype for float tensors: bf16 | f16 | f32 | f64 (default: as input)
  --accumulate P        f32 (default) | f64
  --shard-size S        largest output shard, e.g. 500MB, 2GiB (default 5GB)
  --allow-nonfinite     merge even when an input holds NaN/Inf (reported)
  --keep-order          merge in the order given (oldest first) instead of by progress
  --threads N           worker threads (default: all cores)
  --force               replace an existing output
  --json                print the merge record as JSON

example:
  pma merge run/checkpoint-1000 run/checkpoint-2000 run/checkpoint-3000 --out merged --method ema --alpha 0.2`;

const DTYPES: Record<string, FloatDType> = { bf16: "BF16", f16: "F16", f32: "F32", f64: "F64" };

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        out: { type: "string", short: "o" },
        method: { type: "string" },
        alpha: { type: "string" },
        weights: { type: "string" },
        "no-normalize": { type: "boolean" },
        dtype: { type: "string" },
        accumulate: { type: "string" },
        "shard-size": { type: "string" },
        "allow-nonfinite": { type: "boolean" },
        "keep-order": { type: "boolean" },
        threads: { type: "string" },
        force: { type: "boolean" },
        json: { type: "boolean" },
      },
      usage,
    );
    if (positionals.length === 0) throw new PmaError("USAGE", `no checkpoints given\n\n${usage}`);
    if (values.out === undefined) throw new PmaError("USAGE", `--out DIR is required\n\n${usage}`);
    const method = methodFrom(values);
    const dtype = values.dtype === undefined ? undefined : DTYPES[values.dtype.toLowerCase()];
    if (values.dtype !== undefined && dtype === undefined) {
      throw new PmaError("USAGE", `--dtype must be one of bf16, f16, f32, f64 (got '${values.dtype}')`);
    }
    const accumulate = values.accumulate ?? "f32";
    if (accumulate !== "f32" && accumulate !== "f64") throw new PmaError("USAGE", `--accumulate must be f32 or f64 (got '${accumulate}')`);
    const threads = values.threads === undefined ? undefined : Number(values.threads);
    if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
      throw new PmaError("USAGE", `--threads must be a positive integer (got '${values.threads}')`);
    }
    const progress = byteProgress("merge");
    const interrupt = interruptSignal();
    let record: MergeRecord;
    try {
      record = await merge({
        inputs: positionals,
        out: values.out,
        method,
        ...(dtype !== undefined ? { dtype } : {}),
        accumulate,
        ...(values["shard-size"] !== undefined ? { shardSize: parseBytes(values["shard-size"], "--shard-size") } : {}),
        allowNonfinite: values["allow-nonfinite"] ?? false,
        force: values.force ?? false,
        keepOrder: values["keep-order"] ?? false,
        ...(threads !== undefined ? { threads } : {}),
        onProgress: (done, total) => progress.update(done, total),
        onNote: (note) => process.stderr.write(`pma: note: ${note}\n`),
        signal: interrupt.signal,
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

function methodFrom(values: { method?: string; alpha?: string; weights?: string; "no-normalize"?: boolean }): MethodSpec {
  if (values.weights !== undefined) {
    if (values.method !== undefined && values.method !== "custom") {
      throw new PmaError("USAGE", `--weights gives custom weights; it cannot be combined with --method ${values.method}`);
    }
    const weights = values.weights.split(",").map((w) => {
      const x = Number(w.trim());
      if (w.trim() === "" || !Number.isFinite(x)) throw new PmaError("USAGE", `--weights: '${w}' is not a number`);
      return x;
    });
    return { method: "custom", weights, normalize: !(values["no-normalize"] ?? false) };
  }
  const m = (values.method ?? "sma").toLowerCase();
  if (m === "sma" || m === "wma") return { method: m };
  if (m === "ema") {
    const alpha = values.alpha === undefined ? 0.2 : Number(values.alpha);
    if (!(alpha > 0 && alpha <= 1)) throw new PmaError("USAGE", `--alpha must be in (0, 1] (got '${values.alpha}')`);
    return { method: "ema", alpha };
  }
  if (m === "custom") throw new PmaError("USAGE", "--method custom needs --weights W1,W2,...");
  throw new PmaError("USAGE", `--method must be sma, wma or ema (got '${values.method}')`);
}

export function describeMerge(r: MergeRecord, out: string): string {
  const lines = [
    `merged ${r.inputs.length} checkpoint(s) with ${r.method.toUpperCase()}${r.alpha !== undefined ? ` (alpha ${r.alpha})` : ""}, ordered by ${r.order_basis}:`,
    ...r.inputs.map((i) => {
      const where = [i.step !== null ? `step ${i.step}` : null, i.tokens !== null ? `${i.tokens} tokens` : null].filter(Boolean).join(", ");
      return `  ${i.coefficient.toFixed(6)}  ${i.path}${where ? `  (${where})` : ""}`;
    }),
    `wrote ${out}: ${r.tensors} tensors, ${r.parameters.toLocaleString("en-US")} parameters, ${(r.bytes_written / 2 ** 20).toFixed(1)} MiB in ${r.files.length} file(s), dtype ${r.dtype}, accumulated in ${r.accumulate}`,
    `read ${(r.bytes_read / 2 ** 30).toFixed(2)} GiB in ${r.seconds.toFixed(2)} s (${(r.bytes_read / 2 ** 30 / Math.max(r.seconds, 1e-9)).toFixed(2)} GiB/s)`,
  ];
  for (const n of r.nonfinite) lines.push(`warning: ${n.count} NaN/Inf value(s) in "${n.tensor}" of ${n.checkpoint ?? "the merged result"}`);
  return lines.join("\n") + "\n";
}
