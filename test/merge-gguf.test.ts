import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { isPmaError, type PmaErrorCode } from "../src/common/errors.js";
import { GgufFile } from "../src/formats/gguf.js";
import { gguf, type GgufMetadata } from "../src/formats/gguf-values.js";
import { writeGguf, type GgufTensorData } from "../src/formats/gguf-writer.js";
import { writeSafetensors } from "../src/formats/safetensors-writer.js";
import { merge } from "../src/merge/merger.js";
import { coefficientsFor, type MethodSpec } from "../src/merge/methods.js";
import { bf16ToNumber, numberToBf16 } from "../src/tensor/bf16.js";
import type { FloatDType } from "../src/tensor/dtype.js";
import { f16ToNumber, numberToF16 } from "../src/tensor/f16.js";
import { GT } from "./formats-gguf-fixtures.js";
import { fromBytes, representable, rng, tempDir, toBytes, treeHash } from "./helpers/fixtures.js";

interface Spec {
  name: string;
  dtype: FloatDType;
  /** torch order */
  shape: number[];
  scale: number;
}

// Odd sizes exercise SIMD tails and chunk boundaries; a 0-dim and an empty tensor too.
const SPECS: Spec[] = [
  { name: "token_embd.weight", dtype: "BF16", shape: [37, 29], scale: 0.05 },
  { name: "blk.0.ffn_up.weight", dtype: "F16", shape: [13, 31], scale: 2 },
  { name: "blk.0.attn_norm.weight", dtype: "F32", shape: [1001], scale: 1 },
  { name: "output_norm.weight", dtype: "F64", shape: [9], scale: 3 },
  { name: "scalar", dtype: "F32", shape: [], scale: 1 },
  { name: "empty", dtype: "BF16", shape: [0, 4], scale: 1 },
];
const GGML: Record<FloatDType, number> = { F32: GT.F32, F16: GT.F16, BF16: GT.BF16, F64: GT.F64 };
const POSITIONS = Int32Array.from([0, 1, 2, 3, 4]);
const N = 4;
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

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

function metadataFor(step: number): GgufMetadata {
  return new Map([
    ["general.architecture", gguf.string("llama")],
    ["general.file_type", gguf.u32(1)],
    ["llama.context_length", gguf.u32(step)],
    ["llama.attention.layer_norm_rms_epsilon", gguf.f32(1e-5)],
    ["tokenizer.ggml.tokens", gguf.strings(["<unk>", "<s>", `step-${step}`])],
  ]);
}

function tensorsFor(
  values: number[][],
  over: Partial<Record<string, Partial<GgufTensorData>>> = {},
): GgufTensorData[] {
  const floats = SPECS.map((s, t) => ({
    name: s.name,
    type: GGML[s.dtype],
    dims: [...s.shape].reverse(),
    data: toBytes(values[t]!, s.dtype),
    ...over[s.name],
  }));
  return [
    ...floats,
    {
      name: "blk.0.pos",
      type: GT.I32,
      dims: [5],
      data: new Uint8Array(POSITIONS.buffer),
      ...over["blk.0.pos"],
    },
  ];
}

function roundTo(x: number, dtype: FloatDType): number {
  if (dtype === "BF16") return bf16ToNumber(numberToBf16(x));
  if (dtype === "F16") return f16ToNumber(numberToF16(x));
  return dtype === "F32" ? Math.fround(x) : x;
}

const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

async function readMerged(path: string) {
  const f = await GgufFile.open(path);
  const out = new Map<string, { type: number; dims: number[]; values: number[] }>();
  for (const t of f.tensors.values()) {
    const bytes = await f.read(t.name);
    const values =
      t.dtype === "I32"
        ? [...new Int32Array(new Uint8Array(bytes).buffer)]
        : fromBytes(bytes, t.dtype as FloatDType);
    out.set(t.name, { type: t.ggmlType, dims: t.dims, values });
  }
  const metadata = f.metadata;
  await f.close();
  return { tensors: out, metadata };
}

describe("GGUF merge against a float64 reference", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let values: number[][][];
  let paths: string[];
  before(async () => {
    tmp = await tempDir("pma-gguf-merge-");
    values = makeValues(42);
    paths = [];
    await mkdir(join(tmp.dir, "run"));
    // Passed newest first: pma must order them by the step in their names.
    for (let c = N - 1; c >= 0; c--) {
      const step = (c + 1) * 100;
      const p = join(tmp.dir, `run/checkpoint-${step}.gguf`);
      await writeGguf(p, metadataFor(step), tensorsFor(values[c]!));
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
      const out = join(tmp.dir, `f64-${method.method}.gguf`);
      const record = await merge({
        inputs: paths,
        out,
        method,
        accumulate: "f64",
        chunkElements: 100,
        threads: 2,
      });
      assert.equal(record.order_basis, "step");
      assert.deepEqual(
        record.inputs.map((i) => i.step),
        [100, 200, 300, 400],
      );
      assert.deepEqual(record.files, [`f64-${method.method}.gguf`]);
      assert.equal(record.companions_from, null);
      const c = coefficientsFor(method, N);
      const merged = await readMerged(out);
      assert.deepEqual(
        [...merged.tensors.keys()],
        [...SPECS.map((s) => s.name), "blk.0.pos"],
        "tensor-info order kept",
      );
      SPECS.forEach((s, t) => {
        const got = merged.tensors.get(s.name)!;
        assert.deepEqual(
          [got.type, got.dims],
          [GGML[s.dtype], [...s.shape].reverse()],
          `${s.name} keeps its type and dims`,
        );
        for (let e = 0; e < numel(s.shape); e++) {
          let ref = 0;
          for (let i = 0; i < N; i++) ref += c[i]! * values[i]![t]![e]!;
          assert.ok(
            same(got.values[e]!, roundTo(ref, s.dtype)),
            `${s.name}[${e}]: ${got.values[e]} vs ${roundTo(ref, s.dtype)}`,
          );
        }
      });
      assert.deepEqual(
        merged.tensors.get("blk.0.pos")!.values,
        [...POSITIONS],
        "identical integer tensors are copied",
      );
      // Metadata: the newest input's, types kept, then the provenance keys.
      const expected = metadataFor(400);
      expected.set("pma.version", merged.metadata.get("pma.version")!);
      expected.set("pma.method", gguf.string(method.method));
      expected.set("pma.coefficients", gguf.f64s(c));
      expected.set("pma.inputs", gguf.u32(N));
      assert.deepEqual(merged.metadata, expected);
      assert.equal(merged.metadata.get("pma.version")!.type, "string");
    });
  }

  test("--dtype bf16 with f32 accumulation stays within the bound and says so in general.file_type", async () => {
    const out = join(tmp.dir, "bf16.gguf");
    await merge({
      inputs: paths,
      out,
      method: { method: "wma" },
      dtype: "BF16",
      chunkElements: 64,
      threads: 2,
    });
    const c = coefficientsFor({ method: "wma" }, N);
    const merged = await readMerged(out);
    assert.deepEqual(merged.metadata.get("general.file_type"), gguf.u32(32), "llama.cpp's MOSTLY_BF16");
    assert.equal(merged.tensors.get("blk.0.pos")!.type, GT.I32);
    SPECS.forEach((s, t) => {
      const got = merged.tensors.get(s.name)!;
      assert.equal(got.type, GT.BF16);
      const u = s.dtype === "F64" ? 2 ** -53 : 2 ** -24;
      for (let e = 0; e < numel(s.shape); e++) {
        let ref = 0;
        let mag = 0;
        for (let i = 0; i < N; i++) {
          ref += c[i]! * values[i]![t]![e]!;
          mag += Math.abs(c[i]! * values[i]![t]![e]!);
        }
        const bound = (2 * N + 1) * u * mag;
        const v = got.values[e]!;
        assert.ok(
          v >= roundTo(ref - bound, "BF16") && v <= roundTo(ref + bound, "BF16"),
          `${s.name}[${e}] = ${v}, reference ${ref}`,
        );
      }
    });
  });

  test("inputs are untouched; an existing output is replaced only with --force", async () => {
    const before = await treeHash(join(tmp.dir, "run"));
    const out = join(tmp.dir, "exists.gguf");
    await writeFile(out, "previous");
    await assert.rejects(merge({ inputs: paths, out }), (e) => isPmaError(e, "EXISTS"));
    assert.equal(await readFile(out, "utf8"), "previous");
    await merge({ inputs: paths, out, force: true });
    assert.equal((await readMerged(out)).tensors.size, SPECS.length + 1);
    assert.deepEqual(await treeHash(join(tmp.dir, "run")), before);
    assert.ok(!(await readdir(tmp.dir)).some((f) => f.includes(".pma-tmp-")));
  });
});

describe("GGUF merge refuses bad input and leaves nothing behind", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let good: string[];
  let values: number[][][];
  before(async () => {
    tmp = await tempDir("pma-gguf-bad-");
    values = makeValues(7);
    await mkdir(join(tmp.dir, "in"));
    good = [];
    for (let c = 0; c < 2; c++) {
      const p = join(tmp.dir, `in/checkpoint-${c + 1}.gguf`);
      await writeGguf(p, metadataFor(c + 1), tensorsFor(values[c]!));
      good.push(p);
    }
  });
  after(() => tmp.cleanup());

  async function expectFailure(
    inputs: string[],
    code: PmaErrorCode,
    parts: string[],
    opts: Partial<Parameters<typeof merge>[0]> = {},
  ) {
    const outDir = join(tmp.dir, "out");
    const before = await treeHash(join(tmp.dir, "in"));
    await assert.rejects(merge({ inputs, out: join(outDir, "merged.gguf"), ...opts }), (e) => {
      assert.ok(isPmaError(e, code), `expected ${code}, got ${String(e)}`);
      for (const p of parts)
        assert.ok((e as Error).message.includes(p), `"${(e as Error).message}" lacks ${p}`);
      return true;
    });
    assert.ok(
      !existsSync(outDir) || (await readdir(outDir)).length === 0,
      "no output and no temporary file left",
    );
    assert.deepEqual(await treeHash(join(tmp.dir, "in")), before, "inputs untouched");
  }

  test("a quantized tensor is refused, naming the file, the tensor and its type", async () => {
    const q = join(tmp.dir, "in/quantized/checkpoint-3.gguf");
    await mkdir(join(tmp.dir, "in/quantized"));
    const data = tensorsFor(values[2]!, {
      "blk.0.ffn_up.weight": { type: GT.Q8_0, dims: [32, 13], data: new Uint8Array(13 * 34) },
    });
    await writeGguf(q, metadataFor(3), data);
    await expectFailure([...good, q], "DTYPE_UNSUPPORTED", [
      q,
      'tensor "blk.0.ffn_up.weight" is Q8_0',
      "quantized",
    ]);
  });

  test("mismatched tensors are listed", async () => {
    const other = join(tmp.dir, "in/other/checkpoint-3.gguf");
    await mkdir(join(tmp.dir, "in/other"));
    await writeGguf(
      other,
      metadataFor(3),
      tensorsFor(values[2]!, { "blk.0.attn_norm.weight": { dims: [1001, 1] } }),
    );
    await expectFailure([...good, other], "CHECKPOINT_MISMATCH", [
      '"blk.0.attn_norm.weight" has shape [1, 1001], but [1001]',
    ]);
  });

  test("an integer tensor that differs is refused", async () => {
    const other = join(tmp.dir, "in/int/checkpoint-3.gguf");
    await mkdir(join(tmp.dir, "in/int"));
    await writeGguf(
      other,
      metadataFor(3),
      tensorsFor(values[2]!, { "blk.0.pos": { data: new Uint8Array(20) } }),
    );
    await expectFailure([...good, other], "NONFLOAT_DIFFERS", ['"blk.0.pos" differs']);
  });

  test("a malformed GGUF is refused with its error, naming the file", async () => {
    const bytes = await readFile(good[0]!);
    const cut = join(tmp.dir, "in/cut/checkpoint-3.gguf");
    await mkdir(join(tmp.dir, "in/cut"));
    await writeFile(cut, bytes.subarray(0, bytes.length - 40));
    await expectFailure([...good, cut], "GGUF_INVALID", [cut, "runs past the end of the file"]);
  });

  test("split GGUF parts are refused", async () => {
    const part = join(tmp.dir, "in/split/model-00001-of-00002.gguf");
    await mkdir(join(tmp.dir, "in/split"));
    const md = metadataFor(3);
    md.set("split.count", gguf.u16(2));
    await writeGguf(part, md, tensorsFor(values[2]!));
    await expectFailure([...good, part], "FORMAT_UNSUPPORTED", ["split GGUF", "llama-gguf-split --merge"]);
  });

  test("formats are not mixed, the output must be .gguf, and shards do not apply", async () => {
    const st = join(tmp.dir, "in/st/checkpoint-9");
    await mkdir(st, { recursive: true });
    await writeSafetensors(join(st, "model.safetensors"), [
      { name: "x", dtype: "F32", shape: [1], data: toBytes([1], "F32") },
    ]);
    await expectFailure([good[0]!, st], "USAGE", ["cannot merge GGUF files with other checkpoints"]);
    await assert.rejects(
      merge({ inputs: good, out: join(tmp.dir, "out/merged") }),
      (e) => isPmaError(e, "USAGE") && /ending in \.gguf/.test((e as Error).message),
    );
    await assert.rejects(
      merge({ inputs: [st], out: join(tmp.dir, "out/merged.gguf") }),
      (e) => isPmaError(e, "USAGE") && /names a GGUF file/.test((e as Error).message),
    );
    await expectFailure(good, "USAGE", ["--shard-size applies to safetensors output"], { shardSize: 1000 });
  });

  test("an aborted merge leaves no output and no temporary file", async () => {
    const controller = new AbortController();
    controller.abort();
    await expectFailure(good, "INTERRUPTED", [], {
      signal: controller.signal,
      chunkElements: 16,
      threads: 1,
    });
  });
});

describe("pma merge and inspect on GGUF files (CLI)", () => {
  const PMA = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  const pma = (...args: string[]) => spawnSync(process.execPath, [PMA, ...args], { encoding: "utf8" });
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let paths: string[];
  before(async () => {
    tmp = await tempDir("pma-gguf-cli-");
    const values = makeValues(11);
    paths = [];
    for (let c = 0; c < 3; c++) {
      const p = join(tmp.dir, `step_${(c + 1) * 10}.gguf`);
      await writeGguf(p, metadataFor((c + 1) * 10), tensorsFor(values[c]!));
      paths.push(p);
    }
  });
  after(() => tmp.cleanup());

  test("pma merge --out x.gguf --dtype f16 --json writes one GGUF and prints the record", async () => {
    const out = join(tmp.dir, "merged.gguf");
    const r = pma(
      "merge",
      paths[2]!,
      paths[0]!,
      paths[1]!,
      "--out",
      out,
      "--method",
      "ema",
      "--alpha",
      "0.5",
      "--dtype",
      "f16",
      "--json",
    );
    assert.equal(r.status, 0, r.stderr);
    const record = JSON.parse(r.stdout);
    assert.deepEqual(record.coefficients, [0.25, 0.25, 0.5]);
    assert.deepEqual(
      record.inputs.map((i: { step: number }) => i.step),
      [10, 20, 30],
    );
    assert.deepEqual(record.files, ["merged.gguf"]);
    const f = await GgufFile.open(out);
    assert.equal(f.tensors.get("token_embd.weight")!.typeName, "F16");
    assert.deepEqual(f.metadata.get("pma.coefficients"), gguf.f64s([0.25, 0.25, 0.5]));
    assert.deepEqual(f.metadata.get("llama.context_length"), gguf.u32(30));
    await f.close();
    assert.deepEqual(
      await readdir(tmp.dir),
      ["merged.gguf", ...paths.map((p) => p.slice(tmp.dir.length + 1))].sort(),
    );
  });

  test("pma inspect shows ggml types, torch shapes, bytes and typed metadata; errors exit 1", async () => {
    const r = pma("inspect", paths[0]!);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /GGUF v3 \(alignment 32\), 1 file\(s\), 7 tensors/);
    assert.match(r.stdout, /token_embd\.weight\s+BF16\s+\[37, 29\]\s+1,073\s+2,146/);
    assert.match(r.stdout, /llama\.context_length\s+u32 10\n/);
    assert.match(r.stdout, /tokenizer\.ggml\.tokens\s+array<string>\[3\] \["<unk>", "<s>", "step-10"\]/);
    const bad = join(tmp.dir, "bad.gguf");
    await writeFile(bad, Buffer.from("GGUF\x01\x00\x00\x00", "latin1"));
    const e = pma("inspect", bad);
    assert.equal(e.status, 1);
    assert.match(e.stderr, /version 1 is no longer supported/);
    assert.doesNotMatch(e.stderr, /\n\s+at /);
  });
});
