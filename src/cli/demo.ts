import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { openCheckpointTensors } from "../formats/checkpoint-files.js";
import { merge } from "../merge/merger.js";
import { decodeFloats, floatDTypeBytes } from "../tensor/codec.js";
import { isFloatDType } from "../tensor/dtype.js";
import { optimumValue, tensorGenerator, writeSyntheticRun } from "../trajectory/synthetic.js";
import { parseCommandArgs, type Command } from "./command.js";
import { describeMerge } from "./merge.js";

const usage = `usage: pma demo [--dir DIR] [--checkpoints N] [--keep]

Writes a small synthetic pre-training run (bf16 Llama-shaped checkpoints whose weights
wander around a known optimum theta*), merges its checkpoints with SMA, and shows that
the merge is closer to theta* than the newest checkpoint: averaging cancels the noise.

options:
  --dir DIR          where to write the run and the merge (default ./pma-demo)
  --checkpoints N    checkpoints in the run (default 8)
  --keep             keep DIR afterwards (by default it is removed)

example:
  pma demo --keep --dir /tmp/pma-demo`;

export const command: Command = {
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(
      argv,
      { dir: { type: "string" }, checkpoints: { type: "string" }, keep: { type: "boolean" } },
      usage,
    );
    const dir = resolve(values.dir ?? "pma-demo");
    const n = Number(values.checkpoints ?? "8");
    if (!(Number.isInteger(n) && n >= 2))
      throw new PmaError("USAGE", `--checkpoints must be an integer >= 2 (got '${values.checkpoints}')`);
    await claimDemoDir(dir);
    const seed = 7;
    const model = { hiddenSize: 256, intermediateSize: 688, layers: 4, vocabSize: 4096, heads: 4 };
    process.stdout.write(
      `writing a synthetic run of ${n} bf16 checkpoints (d_model 256, 4 layers, vocab 4096) to ${dir}/run\n`,
    );
    const paths = await writeSyntheticRun({
      dir: `${dir}/run`,
      model,
      checkpoints: n,
      stepInterval: 1000,
      tokensPerStep: 65536,
      dtype: "BF16",
      seed,
    });
    const out = `${dir}/merged`;
    // Shuffled on purpose: pma orders checkpoints by the tokens they have seen.
    const shuffled = [...paths].reverse();
    const record = await merge({ inputs: shuffled, out, method: { method: "sma" }, force: true });
    process.stdout.write(describeMerge(record, out));
    const latest = await rmsToOptimum(paths[paths.length - 1]!, seed);
    const merged = await rmsToOptimum(out, seed);
    process.stdout.write(
      `RMS distance to theta*: newest checkpoint ${latest.toExponential(3)}, SMA merge ${merged.toExponential(3)} (${(latest / merged).toFixed(2)}x closer)\n`,
    );
    if (!values.keep) await rm(dir, { recursive: true, force: true });
    else process.stdout.write(`kept ${dir}; try: pma inspect ${out} --stats\n`);
    return 0;
  },
};

/** Root-mean-square distance between a checkpoint's float weights and theta*. */
async function rmsToOptimum(path: string, seed: number): Promise<number> {
  const ckpt = await openCheckpointTensors(path);
  let sum = 0;
  let count = 0;
  try {
    for (const t of ckpt.tensors.values()) {
      if (!isFloatDType(t.dtype)) continue;
      const n = t.byteLength / floatDTypeBytes(t.dtype);
      const values = new Float64Array(n);
      decodeFloats(await t.file.read(t.name), t.dtype, values);
      const gen = tensorGenerator(seed, t.name);
      for (let i = 0; i < n; i++) {
        const d = values[i]! - optimumValue(gen, i);
        sum += d * d;
      }
      count += n;
    }
  } finally {
    await ckpt.close();
  }
  return Math.sqrt(sum / count);
}

const MARKER = ".pma-demo";

/** Reuses a directory an earlier demo made; refuses to touch any other non-empty one. */
async function claimDemoDir(dir: string): Promise<void> {
  const entries = await readdir(dir).catch(() => null);
  if (entries !== null && entries.length > 0) {
    if (!entries.includes(MARKER)) {
      throw new PmaError("EXISTS", `${dir} exists and was not made by pma demo; choose another --dir`, {
        file: dir,
      });
    }
    await rm(dir, { recursive: true, force: true });
  }
  await mkdir(dir, { recursive: true });
  await writeFile(`${dir}/${MARKER}`, "made by pma demo; safe to delete\n");
}
