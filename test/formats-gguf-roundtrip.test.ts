import assert from "node:assert/strict";
import { closeSync, openSync, writeSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gguf as hfGguf } from "@huggingface/gguf";
import { isPmaError } from "../src/common/errors.js";
import { GgufFile } from "../src/formats/gguf.js";
import { gguf, type GgufMetadata } from "../src/formats/gguf-values.js";
import { encodeGgufHeader, GgufWriter, writeGguf, type GgufTensorData } from "../src/formats/gguf-writer.js";
import { Bytes, f32Bytes, GT, key, preamble, tensorInfo, VT } from "./formats-gguf-fixtures.js";
import { rng, tempDir } from "./helpers/fixtures.js";

let tmp: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  tmp = await tempDir("pma-gguf-rt-");
});
after(() => tmp.cleanup());

/** Metadata with every value type, in an order that is not alphabetical. */
function richMetadata(): GgufMetadata {
  return new Map([
    ["general.architecture", gguf.string("llama")],
    ["llama.context_length", gguf.u32(4096)],
    ["llama.attention.layer_norm_rms_epsilon", gguf.f32(1e-5)],
    ["test.u8", gguf.u8(200)],
    ["test.i8", gguf.i8(-5)],
    ["test.u16", gguf.u16(60000)],
    ["test.i16", gguf.i16(-300)],
    ["test.i32", gguf.i32(-70000)],
    ["test.bool", gguf.bool(false)],
    ["test.u64", gguf.u64((1n << 64n) - 2n)],
    ["test.i64", gguf.i64(-(1n << 62n))],
    ["test.f64", gguf.f64(Math.PI)],
    ["tokenizer.ggml.tokens", gguf.strings(["<unk>", "é", "🌍", ""])],
    ["tokenizer.ggml.scores", gguf.f32s([0, -1.5, 2.25, 1e-3])],
    ["test.u64s", { type: "array", elementType: "u64", values: BigUint64Array.from([0n, (1n << 64n) - 1n]) }],
    ["test.bools", { type: "array", elementType: "bool", values: [true, false, true] }],
    [
      "test.nested",
      {
        type: "array",
        elementType: "array",
        values: [{ type: "array", elementType: "u8", values: Uint8Array.from([1, 2]) }],
      },
    ],
  ]);
}

/** The same metadata as bytes, written by hand from the spec. */
function richMetadataBytes(b: Bytes): Bytes {
  key(b, "general.architecture", VT.string).str("llama");
  key(b, "llama.context_length", VT.u32).u32(4096);
  key(b, "llama.attention.layer_norm_rms_epsilon", VT.f32).f32(1e-5);
  key(b, "test.u8", VT.u8).u8(200);
  key(b, "test.i8", VT.i8).i8(-5);
  key(b, "test.u16", VT.u16).u16(60000);
  key(b, "test.i16", VT.i16).i16(-300);
  key(b, "test.i32", VT.i32).i32(-70000);
  key(b, "test.bool", VT.bool).u8(0);
  key(b, "test.u64", VT.u64).u64((1n << 64n) - 2n);
  key(b, "test.i64", VT.i64).i64(-(1n << 62n));
  key(b, "test.f64", VT.f64).f64(Math.PI);
  key(b, "tokenizer.ggml.tokens", VT.array).u32(VT.string).u64(4).str("<unk>").str("é").str("🌍").str("");
  key(b, "tokenizer.ggml.scores", VT.array).u32(VT.f32).u64(4).f32(0).f32(-1.5).f32(2.25).f32(1e-3);
  key(b, "test.u64s", VT.array)
    .u32(VT.u64)
    .u64(2)
    .u64(0)
    .u64((1n << 64n) - 1n);
  key(b, "test.bools", VT.array).u32(VT.bool).u64(3).u8(1).u8(0).u8(1);
  return key(b, "test.nested", VT.array).u32(VT.array).u64(1).u32(VT.u8).u64(2).u8(1).u8(2);
}

function tensors(): GgufTensorData[] {
  const r = rng(3);
  const f32 = (n: number) => f32Bytes(Array.from({ length: n }, () => Math.fround(r() - 0.5)));
  const raw = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
  return [
    { name: "token_embd.weight", type: "F32", dims: [5, 3], data: f32(15) },
    { name: "blk.0.attn_q.weight", type: "F16", dims: [4, 4], data: raw(32) },
    { name: "blk.0.ffn_up.weight", type: "BF16", dims: [7], data: raw(14) },
    { name: "blk.0.ffn_down.weight", type: "Q8_0", dims: [64, 1], data: raw(68) },
    { name: "output_norm.weight", type: GT.F64, dims: [3], data: raw(24) },
  ];
}

/** The whole file by hand: header, infos with padded running offsets, padding, data. */
function expectedFile(data: GgufTensorData[], typeIds: number[]): Buffer {
  const b = preamble(new Bytes(), data.length, 17);
  richMetadataBytes(b);
  let offset = 0;
  data.forEach((t, i) => {
    tensorInfo(b, t.name, t.dims, typeIds[i]!, offset);
    offset += Math.ceil(t.data.length / 32) * 32;
  });
  b.pad(32);
  for (const t of data) b.raw(t.data).pad(32);
  return b.build();
}

describe("GGUF writer", () => {
  test("writes exactly the bytes the spec prescribes (header, infos, padding, data)", async () => {
    const data = tensors();
    const path = join(tmp.dir, "exact.gguf");
    await writeGguf(path, richMetadata(), data);
    const expected = expectedFile(data, [GT.F32, GT.F16, GT.BF16, GT.Q8_0, GT.F64]);
    assert.deepEqual(await readFile(path), expected);
    const header = encodeGgufHeader(richMetadata(), data);
    assert.equal(header.dataStart % 32, 0);
    assert.deepEqual(Buffer.from(header.bytes), expected.subarray(0, header.dataStart));
  });

  test("write -> read keeps every type, value, order and byte", async () => {
    const data = tensors();
    const path = join(tmp.dir, "rt.gguf");
    await writeGguf(path, richMetadata(), data);
    const f = await GgufFile.open(path);
    assert.deepEqual(f.metadata, richMetadata());
    assert.deepEqual(
      [...f.tensors.keys()],
      data.map((t) => t.name),
    );
    for (const t of data) {
      const info = f.tensors.get(t.name)!;
      assert.deepEqual(info.dims, t.dims);
      assert.deepEqual(info.shape, [...t.dims].reverse());
      assert.equal(info.offset % 32, 0);
      assert.deepEqual(await f.read(t.name), t.data);
    }
    // Reading it back and writing it again gives the same file.
    const again = join(tmp.dir, "rt2.gguf");
    await writeGguf(
      again,
      f.metadata,
      await Promise.all(
        [...f.tensors.values()].map(async (t) => ({
          name: t.name,
          type: t.ggmlType,
          dims: t.dims,
          data: await f.read(t.name),
        })),
      ),
    );
    await f.close();
    assert.deepEqual(await readFile(again), await readFile(path));
  });

  test("a second reader (@huggingface/gguf) agrees on types, values, dims, types and offsets", async () => {
    const data = tensors();
    const path = join(tmp.dir, "hf.gguf");
    await writeGguf(path, richMetadata(), data);
    const ours = await GgufFile.open(path);
    await ours.close();
    const theirs = await hfGguf(path, { allowLocalFile: true, typedMetadata: true });
    const typed = theirs.typedMetadata as unknown as Record<
      string,
      { value: unknown; type: number; subType?: number }
    >;
    const scalar: [string, number, unknown][] = [
      ["general.architecture", VT.string, "llama"],
      ["llama.context_length", VT.u32, 4096],
      ["llama.attention.layer_norm_rms_epsilon", VT.f32, Math.fround(1e-5)],
      ["test.u8", VT.u8, 200],
      ["test.i8", VT.i8, -5],
      ["test.u16", VT.u16, 60000],
      ["test.i16", VT.i16, -300],
      ["test.i32", VT.i32, -70000],
      ["test.bool", VT.bool, false],
      ["test.u64", VT.u64, (1n << 64n) - 2n],
      ["test.i64", VT.i64, -(1n << 62n)],
      ["test.f64", VT.f64, Math.PI],
    ];
    for (const [k, type, value] of scalar)
      assert.deepEqual([typed[k]!.type, typed[k]!.value], [type, value], k);
    assert.deepEqual(
      [typed["tokenizer.ggml.tokens"]!.subType, typed["tokenizer.ggml.tokens"]!.value],
      [VT.string, ["<unk>", "é", "🌍", ""]],
    );
    assert.deepEqual(
      [typed["tokenizer.ggml.scores"]!.subType, typed["tokenizer.ggml.scores"]!.value],
      [VT.f32, [0, -1.5, 2.25, Math.fround(1e-3)]],
    );
    assert.equal(theirs.tensorDataOffset, BigInt(ours.dataStart));
    assert.deepEqual(
      theirs.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype, Number(t.offset)]),
      [...ours.tensors.values()].map((t) => [t.name, t.dims, t.ggmlType, t.offset]),
    );
  });

  test("a header of several MiB (a large vocabulary) round-trips every value", async () => {
    const tokens = Array.from({ length: 120_000 }, (_, i) => `tok-${i}-${"é".repeat(i % 7)}`);
    const scores = Float32Array.from({ length: 120_000 }, (_, i) => Math.fround(Math.sin(i)));
    const md: GgufMetadata = new Map([
      ["tokenizer.ggml.tokens", gguf.strings(tokens)],
      ["tokenizer.ggml.scores", { type: "array", elementType: "f32", values: scores }],
      ["after", gguf.u64(123n)],
    ]);
    const path = join(tmp.dir, "big.gguf");
    await writeGguf(path, md, tensors());
    const f = await GgufFile.open(path);
    assert.ok(f.dataStart > 2 << 20, "bigger than the reader's 1 MiB window");
    assert.deepEqual(f.metadata, md);
    assert.deepEqual(await f.read("token_embd.weight"), tensors()[0]!.data);
    await f.close();
  });

  test("general.alignment is honoured for the data section and every tensor", async () => {
    const md: GgufMetadata = new Map([["general.alignment", gguf.u32(64)]]);
    const data = tensors();
    const path = join(tmp.dir, "a64.gguf");
    await writeGguf(path, md, data);
    const f = await GgufFile.open(path);
    assert.equal(f.alignment, 64);
    assert.equal(f.dataStart % 64, 0);
    for (const t of f.tensors.values()) assert.equal(t.offset % 64, 0);
    assert.equal(f.fileSize, f.dataStart + data.reduce((s, t) => s + Math.ceil(t.data.length / 64) * 64, 0));
    await f.close();
  });

  test("refuses what GGUF or llama.cpp cannot hold", () => {
    const t = (over: Partial<GgufTensorData>) => [
      { name: "t", type: "F32", dims: [4], data: new Uint8Array(16), ...over },
    ];
    const cases: [GgufMetadata, GgufTensorData[], string][] = [
      [new Map(), t({ name: "n".repeat(64) }), "name is 64 bytes; ggml allows at most 63"],
      [new Map(), [...t({}), ...t({})], 'tensor "t" is listed twice'],
      [new Map(), t({ dims: [1, 1, 1, 1, 1] }), "has 5 dims"],
      [new Map(), t({ type: "Q9_9" }), 'unknown ggml type "Q9_9"'],
      [new Map(), t({ type: "Q4_0", dims: [16] }), "not a multiple of the Q4_0 block size 32"],
      [new Map(), t({ name: "bad\uD800" }), "unpaired UTF-16 surrogate"],
      [new Map([["general.alignment", gguf.u32(24)]]), t({}), "must be a u32 power of two"],
      [new Map([["general.alignment", gguf.u64(32)]]), t({}), "must be a u32 power of two"],
      [new Map([["x", gguf.u32(2 ** 32)]]), t({}), 'metadata key "x" must be an integer in [0, 4294967295]'],
      [new Map([["x", gguf.i8(1.5)]]), t({}), "must be an integer in [-128, 127]"],
      [new Map([["x", { type: "u64", value: 5 as unknown as bigint }]]), t({}), "must be a bigint"],
      [
        new Map([
          [
            "x",
            { type: "array", elementType: "f32", values: new Float64Array(1) as unknown as Float32Array },
          ],
        ]),
        t({}),
        "must be a Float32Array",
      ],
      [new Map([["", gguf.u8(1)]]), t({}), "keys must not be empty"],
    ];
    for (const [md, specs, part] of cases) {
      assert.throws(
        () => encodeGgufHeader(md, specs),
        (e) => isPmaError(e, "GGUF_INVALID") && (e as Error).message.includes(part),
        part,
      );
    }
  });
});

describe("GgufWriter file handling", () => {
  test("tensor bytes written by position from another descriptor land in place; finish publishes", async () => {
    const data = tensors();
    const path = join(tmp.dir, "positional.gguf");
    const w = await GgufWriter.create(path, richMetadata(), data);
    assert.ok(
      (await readdir(tmp.dir)).some((f) => f.startsWith(".positional.gguf.pma-tmp-")),
      "written into a hidden sibling",
    );
    await assert.rejects(readFile(path), "nothing at the path before finish");
    // As a merge worker does: open the file itself and pwrite, in reverse order.
    for (const t of [...data].reverse()) {
      const l = w.layout(t.name);
      const fd = openSync(l.file, "r+");
      writeSync(fd, t.data, 0, t.data.length, l.fileOffset);
      closeSync(fd);
    }
    assert.equal(await w.finish(), path);
    assert.deepEqual(await readFile(path), expectedFile(data, [GT.F32, GT.F16, GT.BF16, GT.Q8_0, GT.F64]));
    assert.ok(!(await readdir(tmp.dir)).some((f) => f.includes(".pma-tmp-")), "no temporary file left");
  });

  test("an existing file is replaced only with force; abort leaves the path untouched", async () => {
    const path = join(tmp.dir, "exists.gguf");
    await writeFile(path, "previous");
    const data = tensors();
    await assert.rejects(
      GgufWriter.create(path, new Map(), data),
      (e) => isPmaError(e, "EXISTS") && /--force/.test((e as Error).message),
    );
    const w = await GgufWriter.create(path, new Map(), data, { force: true });
    await w.write("token_embd.weight", 0, data[0]!.data);
    await assert.rejects(w.write("token_embd.weight", 40, new Uint8Array(40)), (e) =>
      isPmaError(e, "RANGE_INVALID"),
    );
    await w.abort();
    assert.equal(await readFile(path, "utf8"), "previous");
    assert.ok(!(await readdir(tmp.dir)).some((f) => f.includes(".pma-tmp-")));
    await writeGguf(path, new Map(), data, { force: true });
    const f = await GgufFile.open(path);
    assert.deepEqual(await f.read("blk.0.ffn_up.weight"), data[2]!.data);
    await f.close();
  });

  test("writeGguf refuses data of the wrong size and leaves nothing", async () => {
    const path = join(tmp.dir, "wrong.gguf");
    await assert.rejects(
      writeGguf(path, new Map(), [{ name: "t", type: "F32", dims: [4], data: new Uint8Array(12) }]),
      (e) => isPmaError(e, "TENSOR_SIZE_MISMATCH"),
    );
    assert.ok(
      !(await readdir(tmp.dir)).some((f) => f.startsWith("wrong.gguf") || f.startsWith(".wrong.gguf")),
    );
  });
});
