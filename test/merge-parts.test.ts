import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { openCheckpointTensors } from "../src/formats/checkpoint-files.js";
import { writeSafetensors, type TensorData } from "../src/formats/safetensors-writer.js";
import { finalizeMerge } from "../src/merge/finalize.js";
import { merge, type MergeOptions, type MergeRecord } from "../src/merge/merger.js";
import { partsDir } from "../src/merge/parts-layout.js";
import { coefficientsFor } from "../src/merge/methods.js";
import { bf16ToNumber, numberToBf16 } from "../src/tensor/bf16.js";
import { f16ToNumber, numberToF16 } from "../src/tensor/f16.js";
import type { FloatDType } from "../src/tensor/dtype.js";
import { fromBytes, representable, rng, tempDir, toBytes, treeHash } from "./helpers/fixtures.js";
import { writePeftRun } from "./helpers/peft-run.js";
import { PMA_CLI } from "./helpers/processes.js";
import { lossCurve } from "./helpers/spiky-run.js";

interface Spec {
  name: string;
  dtype: FloatDType;
  shape: number[];
}

// One tensor far larger than a share of 2..8 parts (it must be cut), layers smaller
// than a share (kept whole), odd sizes, a scalar, an empty tensor; plus an integer
// tensor (copied, never cut). Shards of 40 kB put tensors on several files.
const SPECS: Spec[] = [
  { name: "model.embed_tokens.weight", dtype: "BF16", shape: [301, 257] },
  { name: "model.layers.0.mlp.up_proj.weight", dtype: "BF16", shape: [61, 67] },
  { name: "model.layers.0.mlp.down_proj.weight", dtype: "BF16", shape: [67, 61] },
  { name: "model.layers.0.self_attn.q_proj.weight", dtype: "F16", shape: [33, 37] },
  { name: "model.layers.0.input_layernorm.weight", dtype: "F32", shape: [1001] },
  { name: "model.norm.weight", dtype: "F64", shape: [9] },
  { name: "scalar", dtype: "F32", shape: [] },
  { name: "empty", dtype: "BF16", shape: [0, 4] },
];
const N = 3;
const SHARD = 40_000;
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function roundTo(x: number, dtype: FloatDType): number {
  if (dtype === "BF16") return bf16ToNumber(numberToBf16(x));
  if (dtype === "F16") return f16ToNumber(numberToF16(x));
  if (dtype === "F32") return Math.fround(x);
  return x;
}

/** Every file of a merged folder but the record (its times differ by nature), as hashes. */
async function outputFiles(dir: string): Promise<Record<string, string>> {
  const all = await treeHash(dir);
  delete all["pma_merge.json"];
  return all;
}

/** Runs parts [indexes] of `count`, concurrently, as separate merges. */
async function runParts(
  base: MergeOptions,
  count: number,
  indexes = [...Array(count).keys()],
): Promise<MergeRecord[]> {
  return Promise.all(
    indexes.map((index) => merge({ ...base, part: { index, count }, threads: 1, chunkElements: 999 })),
  );
}

describe("partitioned merge (--part I/N, --finalize)", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let values: number[][][];
  let inputs: string[];
  let base: MergeOptions;
  let reference: string;

  before(async () => {
    tmp = await tempDir("pma-parts-");
    const r = rng(15);
    values = Array.from({ length: N }, () =>
      SPECS.map((s) =>
        representable(
          Array.from({ length: numel(s.shape) }, () => r() * 2 - 1),
          s.dtype,
        ),
      ),
    );
    inputs = [];
    for (let c = 0; c < N; c++) {
      const dir = join(tmp.dir, `run/checkpoint-${(c + 1) * 100}`);
      await mkdir(dir, { recursive: true });
      const tensors: TensorData[] = SPECS.map((s, t) => ({
        name: s.name,
        dtype: s.dtype,
        shape: s.shape,
        data: toBytes(values[c]![t]!, s.dtype),
      }));
      const positions = new Uint8Array(new BigInt64Array([0n, 1n, 2n, 3n, 4n]).buffer);
      tensors.push({ name: "model.position_ids", dtype: "I64", shape: [5], data: positions });
      await writeSafetensors(join(dir, "model.safetensors"), tensors);
      await writeFile(
        join(dir, "config.json"),
        JSON.stringify({ model_type: "llama", torch_dtype: "bfloat16", step: (c + 1) * 100 }),
      );
      await writeFile(join(dir, "tokenizer.json"), JSON.stringify({ version: "1.0", c }));
      await writeFile(
        join(dir, "trainer_state.json"),
        JSON.stringify({ global_step: (c + 1) * 100, num_input_tokens_seen: (c + 1) * 1e5, log_history: [] }),
      );
      inputs.push(dir);
    }
    base = { inputs, out: "", shardSize: SHARD, method: { method: "ema", alpha: 0.3 } };
    reference = join(tmp.dir, "reference");
    await merge({ ...base, out: reference });
  });
  after(() => tmp.cleanup());

  for (const count of [1, 2, 3, 4, 8]) {
    test(`${count} part(s) + finalize: the same files, byte for byte, as the one-process merge`, async () => {
      const out = join(tmp.dir, `parts-${count}`);
      const records = await runParts({ ...base, out }, count);
      assert.ok(!existsSync(out), "nothing is visible before finalize");
      const record = await finalizeMerge({ out });
      assert.deepEqual(await outputFiles(out), await outputFiles(reference));
      assert.ok(!existsSync(partsDir(out)), "the meeting place is removed");
      // The record: the recipe as a one-process merge records it, the parts' sums.
      const whole = JSON.parse(await readFile(join(reference, "pma_merge.json"), "utf8")) as MergeRecord;
      const written = JSON.parse(await readFile(join(out, "pma_merge.json"), "utf8")) as MergeRecord;
      assert.deepEqual(written, record);
      for (const key of [
        "method",
        "alpha",
        "coefficients",
        "inputs",
        "tensors",
        "parameters",
        "files",
        "companions_from",
        "dtype",
        "accumulate",
        "bytes_written",
      ] as const) {
        assert.deepEqual(written[key], whole[key], key);
      }
      assert.equal(written.bytes_read, whole.bytes_read, "every input byte is read once, by one part");
      assert.deepEqual(
        written.parts!.map((p) => p.index),
        [...Array(count).keys()],
      );
      assert.equal(written.part, undefined);
      // Balanced: the embedding alone reads more than a fair share of 3+ parts, so it was cut.
      const embedRead = 301 * 257 * 2 * N;
      const most = Math.max(...records.map((r) => r.bytes_read));
      if (count >= 3)
        assert.ok(
          most < embedRead,
          `the largest part read ${most} bytes, more than the embedding's ${embedRead}: not cut`,
        );
      assert.ok(
        most <= whole.bytes_read / count + embedRead / 8,
        `the largest part read ${most} of ${whole.bytes_read}`,
      );
    });
  }

  test("f64 accumulation in 4 parts equals the float64 sum rounded once (an independent reference)", async () => {
    const out = join(tmp.dir, "parts-f64");
    await runParts({ ...base, out, accumulate: "f64" }, 4);
    await finalizeMerge({ out });
    const c = coefficientsFor({ method: "ema", alpha: 0.3 }, N);
    const ck = await openCheckpointTensors(out);
    try {
      for (const [t, s] of SPECS.entries()) {
        const got = fromBytes(await ck.tensors.get(s.name)!.file.read(s.name), s.dtype);
        for (let e = 0; e < numel(s.shape); e++) {
          let ref = 0;
          for (let i = 0; i < N; i++) ref += c[i]! * values[i]![t]![e]!;
          assert.ok(
            Object.is(got[e], roundTo(ref, s.dtype)),
            `${s.name}[${e}]: ${got[e]} vs ${roundTo(ref, s.dtype)}`,
          );
        }
      }
      assert.deepEqual(
        [...(await ck.tensors.get("model.position_ids")!.file.read("model.position_ids"))],
        [...new Uint8Array(new BigInt64Array([0n, 1n, 2n, 3n, 4n]).buffer)],
      );
    } finally {
      await ck.close();
    }
  });

  test("--dtype f32 in 3 parts: the same bytes as the one-process merge, config.json says float32", async () => {
    const ref = join(tmp.dir, "reference-f32");
    const out = join(tmp.dir, "parts-f32");
    await merge({ ...base, out: ref, dtype: "F32" });
    await runParts({ ...base, out, dtype: "F32" }, 3);
    await finalizeMerge({ out });
    assert.deepEqual(await outputFiles(out), await outputFiles(ref));
    assert.equal(JSON.parse(await readFile(join(out, "config.json"), "utf8")).torch_dtype, "float32");
  });

  test("PEFT adapters in 3 parts: one adapter_model.safetensors, byte-identical, with adapter_config.json", async () => {
    const adapters = await writePeftRun(join(tmp.dir, "lora-run"), 3, 100, lossCurve(300, {}));
    const ref = join(tmp.dir, "reference-lora");
    const out = join(tmp.dir, "parts-lora");
    await merge({ inputs: adapters, out: ref });
    await runParts({ inputs: adapters, out }, 3);
    const record = await finalizeMerge({ out });
    assert.equal(record.adapter, true);
    assert.ok(Object.keys(await outputFiles(out)).includes("adapter_model.safetensors"));
    assert.deepEqual(await outputFiles(out), await outputFiles(ref));
  });

  test("finalize refuses, listing them, while parts are missing; finishes once they are run", async () => {
    const out = join(tmp.dir, "missing");
    await runParts({ ...base, out }, 4, [0, 2]);
    await assert.rejects(finalizeMerge({ out }), (e: unknown) => {
      assert.ok(isPmaError(e, "PARTS_INCOMPLETE"), String(e));
      assert.match(e.message, /2 of 4 part\(s\)/);
      assert.match(e.message, /missing \(not finished, or not run\): 1\/4, 3\/4/);
      assert.match(e.message, /sbatch --array=1,3/);
      return true;
    });
    assert.ok(!existsSync(out));
    await runParts({ ...base, out }, 4, [3, 1]);
    await finalizeMerge({ out });
    assert.deepEqual(await outputFiles(out), await outputFiles(reference));
  });

  test("a part of another merge is refused before it writes; finalize lists inconsistent markers", async () => {
    const out = join(tmp.dir, "inconsistent");
    await runParts({ ...base, out }, 2, [0]);
    const data = await treeHash(partsDir(out));
    for (const other of [
      { ...base, out, part: { index: 1, count: 3 } },
      { ...base, out, part: { index: 1, count: 2 }, method: { method: "sma" as const } },
      { ...base, out, part: { index: 1, count: 2 }, inputs: inputs.slice(1) },
      { ...base, out, part: { index: 1, count: 2 }, dtype: "F32" as const },
    ]) {
      await assert.rejects(merge(other), (e: unknown) => {
        assert.ok(isPmaError(e, "PARTS_MISMATCH"), String(e));
        assert.match(
          e.message,
          /holds the parts of a different merge \((split into 2 parts there, 3 here|method ema .* here|3 checkpoints there, 2 here|--dtype as input there, F32 here)[;)]/,
        );
        return true;
      });
    }
    assert.deepEqual(await treeHash(partsDir(out)), data, "a refused part touches nothing");
    // A marker from another split, and a damaged one.
    await writeFile(join(partsDir(out), "part-00001-of-00003.json"), "{}");
    await writeFile(join(partsDir(out), "part-00001-of-00002.json"), "{ not json");
    await assert.rejects(finalizeMerge({ out }), (e: unknown) => {
      assert.ok(isPmaError(e, "PARTS_MISMATCH"), String(e));
      assert.match(e.message, /part-00001-of-00002\.json: not JSON; rerun that part/);
      assert.match(
        e.message,
        /part-00001-of-00003\.json: from a split into 3 parts, but this merge is split into 2; remove it/,
      );
      return true;
    });
    await rm(join(partsDir(out), "part-00001-of-00003.json"));
    await runParts({ ...base, out }, 2, [1]);
    await finalizeMerge({ out });
    assert.deepEqual(await outputFiles(out), await outputFiles(reference));
  });

  test("rerunning a finished part does nothing; an interrupted part leaves no marker and a rerun completes it", async () => {
    const out = join(tmp.dir, "rerun");
    const [first] = await runParts({ ...base, out }, 2, [0]);
    const notes: string[] = [];
    const again = await merge({ ...base, out, part: { index: 0, count: 2 }, onNote: (n) => notes.push(n) });
    assert.deepEqual(again, first, "the finished part's own record");
    assert.match(notes.join("\n"), /part 0\/2 of .* was already merged/);
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(
      merge({ ...base, out, part: { index: 1, count: 2 }, signal: controller.signal }),
      (e: unknown) => isPmaError(e, "INTERRUPTED"),
    );
    assert.ok(
      !(await readdir(partsDir(out))).includes("part-00001-of-00002.json"),
      "an interrupted part is not marked done",
    );
    await assert.rejects(finalizeMerge({ out }), /missing \(not finished, or not run\): 1\/2/);
    await runParts({ ...base, out }, 2, [1]);
    await finalizeMerge({ out });
    assert.deepEqual(await outputFiles(out), await outputFiles(reference));
    // Finalize again: already done, same record; a part now refuses the existing output.
    const notes2: string[] = [];
    const record = await finalizeMerge({ out, onNote: (n) => notes2.push(n) });
    assert.match(notes2.join("\n"), /already finalized/);
    assert.equal(record.parts!.length, 2);
    await assert.rejects(
      runParts({ ...base, out }, 2, [0]),
      (e: unknown) => isPmaError(e, "EXISTS") && /finalized already/.test(e.message),
    );
  });

  test("finalize without parts says how to run them; an existing output needs --force", async () => {
    await assert.rejects(
      finalizeMerge({ out: join(tmp.dir, "never") }),
      (e: unknown) => isPmaError(e, "PARTS_INCOMPLETE") && /--part I\/N/.test(e.message),
    );
    const out = join(tmp.dir, "forced");
    await mkdir(out);
    await writeFile(join(out, "old.txt"), "old");
    await assert.rejects(runParts({ ...base, out }, 2), (e: unknown) => isPmaError(e, "EXISTS"));
    await runParts({ ...base, out, force: true }, 2);
    await assert.rejects(finalizeMerge({ out }), (e: unknown) => isPmaError(e, "EXISTS"));
    await finalizeMerge({ out, force: true });
    assert.deepEqual(await outputFiles(out), await outputFiles(reference));
  });

  test("CLI: --part and --finalize as processes; usage errors exit 2", () => {
    const out = join(tmp.dir, "cli");
    const pma = (...args: string[]) =>
      spawnSync(process.execPath, [PMA_CLI, "merge", ...args], { encoding: "utf8" });
    const flags = ["--shard-size", String(SHARD), "--method", "ema", "--alpha", "0.3"];
    for (const i of [1, 0]) {
      const r = pma(...inputs, "--out", out, "--part", `${i}/2`, ...flags);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`wrote part ${i}/2 of ${out}`));
    }
    const f = pma("--finalize", out);
    assert.equal(f.status, 0, f.stderr);
    assert.match(f.stdout, /assembled from 2 part\(s\)/);
    for (const bad of [
      ["--part", "2/2"],
      ["--part", "x"],
      ["--part", "1/0"],
    ]) {
      const r = pma(...inputs, "--out", join(tmp.dir, "cli-bad"), ...bad);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /--part must be I\/N with 0 <= I < N/);
    }
    const r = pma("--finalize", out, "--out", out);
    assert.equal(r.status, 2);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    const g = pma(
      ...inputs.map((p) => join(p, "model.safetensors")),
      "--out",
      join(tmp.dir, "x.gguf"),
      "--part",
      "0/2",
    );
    assert.equal(g.status, 2);
  });
});
