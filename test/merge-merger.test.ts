import assert from "node:assert/strict";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { openCheckpointTensors } from "../src/formats/checkpoint-files.js";
import { SafetensorsWriter, writeSafetensors, type TensorData } from "../src/formats/safetensors-writer.js";
import { merge } from "../src/merge/merger.js";
import { coefficientsFor, type MethodSpec } from "../src/merge/methods.js";
import { numberToBf16, bf16ToNumber } from "../src/tensor/bf16.js";
import { numberToF16, f16ToNumber } from "../src/tensor/f16.js";
import type { FloatDType } from "../src/tensor/dtype.js";
import { fromBytes, representable, rng, tempDir, toBytes, treeHash } from "./helpers/fixtures.js";

interface Spec {
  name: string;
  dtype: FloatDType;
  shape: number[];
  scale: number;
}

// Odd sizes on purpose: they exercise the SIMD tails and chunk boundaries.
const SPECS: Spec[] = [
  { name: "model.embed_tokens.weight", dtype: "BF16", shape: [37, 29], scale: 0.05 },
  { name: "model.layers.0.mlp.up_proj.weight", dtype: "F16", shape: [13, 31], scale: 2 },
  { name: "model.layers.0.input_layernorm.weight", dtype: "F32", shape: [1001], scale: 1 },
  { name: "model.norm.weight", dtype: "F64", shape: [9], scale: 3 },
  { name: "scalar", dtype: "F32", shape: [], scale: 1 },
  { name: "empty", dtype: "BF16", shape: [0, 4], scale: 1 },
];
const N = 4;

function numel(shape: number[]) {
  return shape.reduce((a, b) => a * b, 1);
}

/** Checkpoint values: [checkpoint][tensor] -> representable numbers. */
function makeValues(seed: number): number[][][] {
  const r = rng(seed);
  return Array.from({ length: N }, () =>
    SPECS.map((s) =>
      representable(
        Array.from({ length: numel(s.shape) }, () => (r() * 2 - 1) * s.scale),
        s.dtype,
      ),
    ),
  );
}

async function writeCheckpoint(dir: string, values: number[][], step: number, extra: TensorData[] = []) {
  await mkdir(dir, { recursive: true });
  const tensors: TensorData[] = SPECS.map((s, t) => ({
    name: s.name,
    dtype: s.dtype,
    shape: s.shape,
    data: toBytes(values[t]!, s.dtype),
  }));
  await writeSafetensors(join(dir, "model.safetensors"), [...tensors, ...extra]);
  await writeFile(
    join(dir, "config.json"),
    JSON.stringify({ model_type: "llama", step, torch_dtype: "bfloat16" }),
  );
  await writeFile(
    join(dir, "trainer_state.json"),
    JSON.stringify({ global_step: step, num_input_tokens_seen: step * 1000, log_history: [] }),
  );
}

function roundTo(x: number, dtype: FloatDType): number {
  switch (dtype) {
    case "BF16":
      return bf16ToNumber(numberToBf16(x));
    case "F16":
      return f16ToNumber(numberToF16(x));
    case "F32":
      return Math.fround(x);
    case "F64":
      return x;
  }
}

async function readMerged(dir: string) {
  const ck = await openCheckpointTensors(dir);
  const out = new Map<string, { dtype: string; values: number[] }>();
  for (const t of ck.tensors.values()) {
    const bytes = await t.file.read(t.name);
    out.set(t.name, {
      dtype: t.dtype,
      values: ["BF16", "F16", "F32", "F64"].includes(t.dtype)
        ? fromBytes(bytes, t.dtype as FloatDType)
        : [...bytes],
    });
  }
  await ck.close();
  return out;
}

const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

describe("merge against a float64 reference", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let values: number[][][];
  let paths: string[];
  before(async () => {
    tmp = await tempDir();
    values = makeValues(42);
    // Written and passed newest first: pma must order them by progress.
    paths = [];
    for (let c = N - 1; c >= 0; c--) {
      const p = join(tmp.dir, `run/checkpoint-${(c + 1) * 100}`);
      await writeCheckpoint(p, values[c]!, (c + 1) * 100);
      paths.push(p);
    }
  });
  after(() => tmp.cleanup());

  const methods: MethodSpec[] = [
    { method: "sma" },
    { method: "wma" },
    { method: "ema", alpha: 0.3 },
    { method: "custom", weights: [0.5, -0.25, 1, 2], normalize: false },
  ];

  for (const method of methods) {
    test(`${method.method}: f64 accumulation is bit-exact with the float64 sum rounded once`, async () => {
      const out = join(tmp.dir, `f64-${method.method}`);
      const record = await merge({
        inputs: paths,
        out,
        method,
        accumulate: "f64",
        chunkElements: 100,
        threads: 2,
      });
      assert.equal(record.order_basis, "tokens");
      assert.deepEqual(
        record.inputs.map((i) => i.step),
        [100, 200, 300, 400],
      );
      const c = coefficientsFor(method, N);
      const merged = await readMerged(out);
      SPECS.forEach((s, t) => {
        const got = merged.get(s.name)!;
        assert.equal(got.dtype, s.dtype, `${s.name} keeps its dtype`);
        for (let e = 0; e < numel(s.shape); e++) {
          let ref = 0;
          for (let i = 0; i < N; i++) ref += c[i]! * values[i]![t]![e]!;
          assert.ok(
            same(got.values[e]!, roundTo(ref, s.dtype)),
            `${s.name}[${e}]: ${got.values[e]} vs ${roundTo(ref, s.dtype)}`,
          );
        }
      });
    });
  }

  for (const dtype of ["BF16", "F16", "F32"] as FloatDType[]) {
    test(`f32 accumulation into ${dtype} stays within the stated bound of float64`, async () => {
      const out = join(tmp.dir, `f32-${dtype}`);
      await merge({
        inputs: paths,
        out,
        method: { method: "wma" },
        dtype,
        accumulate: "f32",
        chunkElements: 64,
        threads: 2,
      });
      const c = coefficientsFor({ method: "wma" }, N);
      const merged = await readMerged(out);
      let exact = 0;
      let total = 0;
      SPECS.forEach((s, t) => {
        const got = merged.get(s.name)!;
        // F64 inputs are always accumulated in f64.
        const u = s.dtype === "F64" ? 2 ** -53 : 2 ** -24;
        for (let e = 0; e < numel(s.shape); e++) {
          let ref = 0;
          let mag = 0;
          let emulated = 0;
          for (let i = 0; i < N; i++) {
            const x = values[i]![t]![e]!;
            ref += c[i]! * x;
            mag += Math.abs(c[i]! * x);
            emulated =
              s.dtype === "F64"
                ? emulated + c[i]! * x
                : Math.fround(emulated + Math.fround(Math.fround(c[i]!) * x));
          }
          // The bound: N products and N sums each rounded once, plus the rounded
          // coefficient, each within u relative: |acc - ref| <= (2N + 1) u sum|c_i x_i|.
          const bound = (2 * N + 1) * u * mag;
          assert.ok(Math.abs(emulated - ref) <= bound, `bound violated at ${s.name}[${e}]`);
          const lo = roundTo(ref - bound, dtype);
          const hi = roundTo(ref + bound, dtype);
          const v = got.values[e]!;
          assert.ok(v >= lo && v <= hi, `${s.name}[${e}] = ${v} outside [${lo}, ${hi}]`);
          assert.ok(same(v, roundTo(emulated, dtype)), `${s.name}[${e}] is not the rounded f32 sum`);
          total++;
          if (same(v, roundTo(ref, dtype))) exact++;
        }
      });
      // Rounding to a 16-bit float hides the f32 sum's error except near rounding
      // boundaries; an f32 output shows it, so only the bound above applies there.
      if (dtype !== "F32")
        assert.ok(exact / total > 0.98, `only ${exact}/${total} elements equal the rounded float64 result`);
    });
  }

  test("sharded output reads back as the single-file merge, and inputs are untouched", async () => {
    const before = await treeHash(join(tmp.dir, "run"));
    const single = join(tmp.dir, "single");
    const sharded = join(tmp.dir, "sharded");
    await merge({ inputs: paths, out: single, threads: 1 });
    const record = await merge({
      inputs: paths,
      out: sharded,
      shardSize: 3000,
      threads: 2,
      chunkElements: 50,
    });
    assert.ok(record.files.length > 2, "several shards and an index");
    assert.ok(record.files.includes("model.safetensors.index.json"));
    const a = await readMerged(single);
    const b = await readMerged(sharded);
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
    for (const [name, t] of a) assert.deepEqual(b.get(name), t);
    assert.deepEqual(await treeHash(join(tmp.dir, "run")), before);
    const json = JSON.parse(await readFile(join(sharded, "pma_merge.json"), "utf8"));
    assert.equal(json.inputs.length, N);
    assert.equal(json.method, "sma");
    assert.equal(json.inputs[0].tokens, 100_000);
    assert.match(json.inputs[0].header_sha256[0], /^[0-9a-f]{64}$/);
    const config = JSON.parse(await readFile(join(sharded, "config.json"), "utf8"));
    assert.equal(config.step, 400, "companion files come from the newest checkpoint");
    assert.ok(
      !(await readdir(sharded)).includes("trainer_state.json"),
      "trainer state is not copied into a merge",
    );
  });

  test("a sharded input merges like its single-file twin", async () => {
    const shardedInputs: string[] = [];
    for (let c = 0; c < N; c++) {
      const dir = join(tmp.dir, `sharded-in/checkpoint-${(c + 1) * 100}`);
      const w = await SafetensorsWriter.create(
        dir,
        SPECS.map((s) => ({ name: s.name, dtype: s.dtype, shape: s.shape })),
        { shardSize: 2500 },
      );
      for (const [t, s] of SPECS.entries()) await w.write(s.name, 0, toBytes(values[c]![t]!, s.dtype));
      await w.finish();
      shardedInputs.push(dir);
    }
    await merge({
      inputs: shardedInputs,
      out: join(tmp.dir, "from-sharded"),
      method: { method: "ema", alpha: 0.2 },
    });
    await merge({ inputs: paths, out: join(tmp.dir, "from-single"), method: { method: "ema", alpha: 0.2 } });
    assert.deepEqual(
      await readMerged(join(tmp.dir, "from-sharded")),
      await readMerged(join(tmp.dir, "from-single")),
    );
  });
});

describe("merge refuses bad input and leaves nothing behind", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir();
  });
  after(() => tmp.cleanup());

  async function expectFailure(
    inputs: string[],
    code: Parameters<typeof isPmaError>[1],
    opts: Partial<Parameters<typeof merge>[0]> = {},
    messagePart?: string,
  ) {
    const out = join(tmp.dir, "out");
    const before = await treeHash(join(tmp.dir, "in"));
    await assert.rejects(merge({ inputs, out, ...opts }), (e) => {
      assert.ok(isPmaError(e, code), `expected ${code}, got ${String(e)}`);
      if (messagePart !== undefined)
        assert.ok((e as Error).message.includes(messagePart), (e as Error).message);
      return true;
    });
    const left = (await readdir(tmp.dir)).filter((f) => f !== "in");
    assert.deepEqual(left, [], "no output and no temporary directory left");
    assert.deepEqual(await treeHash(join(tmp.dir, "in")), before, "inputs untouched");
  }

  test("different shapes, names or dtypes list the differences", async () => {
    const v = makeValues(1);
    const a = join(tmp.dir, "in/a/checkpoint-1");
    const b = join(tmp.dir, "in/b/checkpoint-2");
    await writeCheckpoint(a, v[0]!, 1);
    await mkdir(b, { recursive: true });
    await writeSafetensors(join(b, "model.safetensors"), [
      { name: "model.embed_tokens.weight", dtype: "BF16", shape: [29, 37], data: toBytes(v[0]![0]!, "BF16") },
      { name: "other", dtype: "F32", shape: [1], data: toBytes([1], "F32") },
    ]);
    await expectFailure([a, b], "CHECKPOINT_MISMATCH", {}, "has shape [29, 37]");
  });

  test("NaN in an input names the tensor and the checkpoint; --allow-nonfinite merges and reports", async () => {
    const v = makeValues(2);
    v[2]![2]![500] = NaN;
    const dirs: string[] = [];
    for (let c = 0; c < N; c++) {
      const d = join(tmp.dir, `in/nan/checkpoint-${c + 1}`);
      await writeCheckpoint(d, v[c]!, c + 1);
      dirs.push(d);
    }
    await expectFailure(dirs, "NONFINITE", {}, "checkpoint-3");
    const out = join(tmp.dir, "out");
    const record = await merge({ inputs: dirs, out, allowNonfinite: true, chunkElements: 128 });
    assert.deepEqual(
      record.nonfinite.map((n) => [n.tensor, n.checkpoint?.endsWith("checkpoint-3")]),
      [[SPECS[2]!.name, true]],
    );
    const merged = await readMerged(out);
    assert.ok(Number.isNaN(merged.get(SPECS[2]!.name)!.values[500]));
    await rm(out, { recursive: true });
  });

  test("integer tensors are copied when identical and refused when they differ", async () => {
    const v = makeValues(3);
    const ids = (k: number) => ({
      name: "position_ids",
      dtype: "I64" as const,
      shape: [3],
      data: new Uint8Array(Buffer.from(new BigInt64Array([0n, 1n, BigInt(k)]).buffer)),
    });
    const same = [join(tmp.dir, "in/int/checkpoint-1"), join(tmp.dir, "in/int/checkpoint-2")];
    await writeCheckpoint(same[0]!, v[0]!, 1, [ids(2)]);
    await writeCheckpoint(same[1]!, v[1]!, 2, [ids(2)]);
    const out = join(tmp.dir, "out");
    await merge({ inputs: same, out });
    assert.deepEqual((await readMerged(out)).get("position_ids")!.values, [...ids(2).data]);
    await merge({ inputs: same, out, force: true });
    const differ = join(tmp.dir, "in/int/checkpoint-3");
    await writeCheckpoint(differ, v[2]!, 3, [ids(5)]);
    await rm(out, { recursive: true });
    await expectFailure([...same, differ], "NONFLOAT_DIFFERS", {}, "position_ids");
  });

  test("an existing output needs --force", async () => {
    const v = makeValues(4);
    const a = join(tmp.dir, "in/x/checkpoint-1");
    await writeCheckpoint(a, v[0]!, 1);
    const out = join(tmp.dir, "out");
    await mkdir(out);
    await writeFile(join(out, "keep.txt"), "previous");
    await assert.rejects(merge({ inputs: [a], out }), (e) => isPmaError(e, "EXISTS"));
    assert.equal(await readFile(join(out, "keep.txt"), "utf8"), "previous");
    await merge({ inputs: [a], out, force: true });
    assert.ok((await readdir(out)).includes("model.safetensors"));
    assert.ok(!(await readdir(out)).includes("keep.txt"));
    await rm(out, { recursive: true });
  });

  test("argument order is used, and said, only when no progress is known", async () => {
    const v = makeValues(5);
    const dirs = ["in/plain/b", "in/plain/a"].map((d) => join(tmp.dir, d));
    for (const [k, d] of dirs.entries()) {
      await mkdir(d, { recursive: true });
      await writeSafetensors(
        join(d, "model.safetensors"),
        SPECS.map((s, t) => ({
          name: s.name,
          dtype: s.dtype,
          shape: s.shape,
          data: toBytes(v[k]![t]!, s.dtype),
        })),
      );
    }
    const notes: string[] = [];
    const out = join(tmp.dir, "out");
    const record = await merge({
      inputs: dirs,
      out,
      method: { method: "wma" },
      onNote: (n) => notes.push(n),
    });
    assert.equal(record.order_basis, "arguments");
    assert.equal(record.inputs[1]!.path, dirs[1]);
    assert.equal(notes.length, 1);
    await rm(out, { recursive: true });
  });

  test("a malformed input is refused with its error code, before anything is written", async () => {
    const v = makeValues(6);
    const good = join(tmp.dir, "in/malformed/checkpoint-1");
    await writeCheckpoint(good, v[0]!, 1);
    const bytes = await readFile(join(good, "model.safetensors"));
    const cases: [string, Uint8Array, Parameters<typeof isPmaError>[1]][] = [
      ["truncated", bytes.subarray(0, bytes.length - 3), "DATA_LENGTH_MISMATCH"],
      ["trailing", Buffer.concat([bytes, Buffer.from([0])]), "DATA_LENGTH_MISMATCH"],
      [
        "huge-header",
        Buffer.concat([Buffer.from(new BigUint64Array([200_000_000n]).buffer), bytes.subarray(8)]),
        "HEADER_TOO_LARGE",
      ],
      [
        "not-json",
        Buffer.concat([
          bytes.subarray(0, 8),
          Buffer.from("x".repeat(Number(bytes.readBigUInt64LE(0)))),
          bytes.subarray(8 + Number(bytes.readBigUInt64LE(0))),
        ]),
        "HEADER_INVALID",
      ],
    ];
    for (const [name, data, code] of cases) {
      const dir = join(tmp.dir, `in/malformed/${name}/checkpoint-2`);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "model.safetensors"), data);
      await expectFailure([good, dir], code, {}, dir);
    }
  });

  test("an aborted merge (Ctrl-C) leaves no output and no temporary files", async () => {
    const v = makeValues(7);
    const dirs: string[] = [];
    for (let c = 0; c < N; c++) {
      const d = join(tmp.dir, `in/abort/checkpoint-${c + 1}`);
      await writeCheckpoint(d, v[c]!, c + 1);
      dirs.push(d);
    }
    const controller = new AbortController();
    controller.abort();
    await expectFailure(dirs, "INTERRUPTED", { signal: controller.signal, chunkElements: 16, threads: 1 });
  });
});
