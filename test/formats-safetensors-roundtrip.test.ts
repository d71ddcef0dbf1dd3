import * as assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { SafetensorsWriter, writeSafetensors, type TensorData } from "../src/formats/safetensors-writer.js";
import { DTYPES, type DType } from "../src/tensor/dtype.js";
import { patternBytes, rejectsWith, tempDir } from "./formats-safetensors-fixtures.js";

let dir = "";
let cleanup: () => Promise<void> = async () => {};
before(async () => {
  ({ dir, cleanup } = await tempDir());
});
after(() => cleanup());

// The reference writer's `Dtype` enum, in declaration order ("increasing alignment");
// files list tensors from the last of these to the first, then by name.
const REFERENCE_ENUM = [
  "BOOL",
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "U8",
  "I8",
  "F8_E5M2",
  "F8_E4M3",
  "F8_E8M0",
  "F8_E4M3FNUZ",
  "F8_E5M2FNUZ",
  "I16",
  "U16",
  "F16",
  "BF16",
  "I32",
  "U32",
  "F32",
  "C64",
  "F64",
  "I64",
  "U64",
];
// Bits per element from the format's dtype list, written out independently of src/.
const BITS: Record<string, number> = {
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  F64: 64,
  I64: 64,
  U64: 64,
  C64: 64,
};

function everyDtype(): TensorData[] {
  assert.deepEqual(
    Object.keys(DTYPES).sort(),
    [...REFERENCE_ENUM].sort(),
    "dtype table and reference list differ",
  );
  return (Object.keys(DTYPES) as DType[]).map((dtype, i) => {
    // 12 elements fill whole bytes at 4, 6 and 8+ bits.
    const shape = [3, 4];
    const data = patternBytes((12 * BITS[dtype]!) / 8, i + 1);
    return { name: `t.${dtype.toLowerCase()}`, dtype, shape, data };
  });
}

/** Parses a file's header straight from its bytes, without the reader under test. */
async function rawHeader(
  file: string,
): Promise<{ n: number; json: string; parsed: Record<string, unknown>; bytes: Buffer }> {
  const bytes = await fs.readFile(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const json = bytes.subarray(8, 8 + n).toString("utf8");
  return { n, json, parsed: JSON.parse(json) as Record<string, unknown>, bytes };
}

async function expectSameTensors(file: SafetensorsFile, tensors: TensorData[]): Promise<void> {
  assert.equal(file.tensors.size, tensors.length);
  for (const t of tensors) {
    const e = file.tensors.get(t.name);
    assert.ok(e, `missing ${t.name}`);
    assert.equal(e.dtype, t.dtype);
    assert.deepEqual(e.shape, t.shape);
    assert.deepEqual(await file.read(t.name), t.data, `${t.name} bytes differ`);
    assert.deepEqual(file.readSync(t.name), t.data, `${t.name} bytes differ (sync)`);
  }
}

describe("round trip", () => {
  it("returns identical bytes for every dtype, scalars and empty tensors", async () => {
    const tensors: TensorData[] = [
      ...everyDtype(),
      { name: "scalar.f32", dtype: "F32", shape: [], data: patternBytes(4, 99) },
      { name: "scalar.f4", dtype: "F4", shape: [2], data: patternBytes(1, 98) },
      { name: "empty.bf16", dtype: "BF16", shape: [0, 7], data: new Uint8Array(0) },
      { name: "empty.f6", dtype: "F6_E3M2", shape: [3, 0], data: new Uint8Array(0) },
    ];
    const file = path.join(dir, "all.safetensors");
    await writeSafetensors(file, tensors, { step: "100" });
    const f = await SafetensorsFile.open(file);
    await expectSameTensors(f, tensors);
    assert.deepEqual(f.metadata, { format: "pt", step: "100" });
    // headerBytes are exactly the file's bytes 8 .. 8+N.
    const raw = await rawHeader(file);
    assert.equal(f.headerSize, raw.n);
    assert.deepEqual(Buffer.from(f.headerBytes), raw.bytes.subarray(8, 8 + raw.n));
    assert.equal(f.fileSize, raw.bytes.length);
    await f.close();
  });

  it("lays the file out as the reference writer does", async () => {
    const tensors: TensorData[] = [
      { name: "b", dtype: "U8", shape: [3], data: patternBytes(3, 1) },
      { name: "a", dtype: "U8", shape: [1], data: patternBytes(1, 2) },
      { name: "norm", dtype: "F32", shape: [2], data: patternBytes(8, 3) },
      { name: "emb", dtype: "BF16", shape: [3], data: patternBytes(6, 4) },
      { name: "c", dtype: "C64", shape: [1], data: patternBytes(8, 5) },
      { name: "d", dtype: "F64", shape: [1], data: patternBytes(8, 6) },
      { name: "q", dtype: "F4", shape: [2], data: patternBytes(1, 7) },
      { name: "é", dtype: "U8", shape: [1], data: patternBytes(1, 8) },
      { name: "z", dtype: "U8", shape: [1], data: patternBytes(1, 9) },
      { name: "\u{1F600}", dtype: "U8", shape: [1], data: patternBytes(1, 10) },
      { name: "\uFF01", dtype: "U8", shape: [1], data: patternBytes(1, 11) },
    ];
    const file = path.join(dir, "order.safetensors");
    await writeSafetensors(file, tensors);
    const { n, json, parsed, bytes } = await rawHeader(file);

    assert.equal(n % 8, 0, "header length must be a multiple of 8");
    const body = json.trimEnd();
    assert.ok(/^ *$/.test(json.slice(body.length)), "padding must be spaces");
    assert.ok(json.length - body.length < 8, "at most 7 bytes of padding");
    assert.deepEqual(parsed.__metadata__, { format: "pt" });

    const entries = Object.entries(parsed).filter(([k]) => k !== "__metadata__") as [
      string,
      { dtype: string; data_offsets: [number, number] },
    ][];
    const byOffset = entries.sort((x, y) => x[1].data_offsets[0] - y[1].data_offsets[0]).map(([k]) => k);
    // Descending enum rank, then UTF-8 byte order of names: U+FF01 (EF BC 81) sorts
    // before U+1F600 (F0 9F 98 80), the reverse of their UTF-16 order.
    assert.deepEqual(byOffset, ["d", "c", "norm", "emb", "a", "b", "z", "é", "\uFF01", "\u{1F600}", "q"]);
    const expected = [...tensors].sort(
      (x, y) =>
        REFERENCE_ENUM.indexOf(y.dtype) - REFERENCE_ENUM.indexOf(x.dtype) ||
        Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)),
    );
    assert.deepEqual(
      byOffset,
      expected.map((t) => t.name),
    );
    // The header also lists them in that order, after __metadata__.
    assert.deepEqual(Object.keys(JSON.parse(json) as object), ["__metadata__", ...byOffset]);

    // Contiguous data, each tensor's bytes at its offsets.
    let offset = 0;
    for (const t of expected) {
      const [begin, end] = (parsed[t.name] as { data_offsets: [number, number] }).data_offsets;
      assert.equal(begin, offset);
      assert.equal(end - begin, t.data.length);
      assert.deepEqual(new Uint8Array(bytes.subarray(8 + n + begin, 8 + n + end)), t.data);
      offset = end;
    }
    assert.equal(bytes.length, 8 + n + offset);
  });

  it("writes one file through SafetensorsWriter in any order and in pieces", async () => {
    const tensors = everyDtype();
    const out = path.join(dir, "single-out");
    const w = await SafetensorsWriter.create(out, tensors, { metadata: { run: "r1" } });
    assert.equal(w.plan.shards.length, 1);
    assert.equal(w.plan.indexFile, null);
    for (const t of [...tensors].reverse()) {
      const half = Math.floor(t.data.length / 2);
      w.writeSync(t.name, half, t.data.subarray(half));
      await w.write(t.name, 0, t.data.subarray(0, half));
    }
    const { files, totalSize } = await w.finish();
    assert.deepEqual(files, [path.join(out, "model.safetensors")]);
    assert.equal(
      totalSize,
      tensors.reduce((s, t) => s + t.data.length, 0),
    );
    assert.deepEqual((await fs.readdir(out)).sort(), ["model.safetensors"]);
    const f = await SafetensorsFile.open(files[0]!);
    await expectSameTensors(f, tensors);
    assert.deepEqual(f.metadata, { format: "pt", run: "r1" });
    await f.close();
  });

  it("matches writeSafetensors byte for byte", async () => {
    const tensors = everyDtype();
    const a = path.join(dir, "a.safetensors");
    await writeSafetensors(a, tensors, { k: "v" });
    const out = path.join(dir, "writer-same");
    const w = await SafetensorsWriter.create(out, tensors, { metadata: { k: "v" } });
    for (const t of tensors) await w.write(t.name, 0, t.data);
    const { files } = await w.finish();
    assert.deepEqual(await fs.readFile(files[0]!), await fs.readFile(a));
  });
});

describe("reader ranges", () => {
  it("reads any byte range, into a caller's buffer, and checks bounds", async () => {
    const data = patternBytes(40, 7);
    const file = path.join(dir, "range.safetensors");
    await writeSafetensors(file, [
      { name: "w", dtype: "F32", shape: [10], data },
      { name: "v", dtype: "U8", shape: [3], data: patternBytes(3, 8) },
    ]);
    const f = await SafetensorsFile.open(file);
    assert.deepEqual(await f.read("w", 12), data.subarray(12));
    assert.deepEqual(await f.read("w", 4, 8), data.subarray(4, 12));
    assert.deepEqual(f.readSync("w", 36, 4), data.subarray(36));
    assert.equal((await f.read("w", 40)).length, 0);
    const into = new Uint8Array(16).fill(0xaa);
    const got = await f.read("w", 8, 8, into);
    assert.equal(got.buffer, into.buffer);
    assert.deepEqual(into.subarray(0, 8), data.subarray(8, 16));
    assert.ok(
      into.subarray(8).every((b) => b === 0xaa),
      "bytes past the range are untouched",
    );

    for (const [off, len] of [
      [0, 41],
      [41, undefined],
      [-1, 4],
      [1.5, 2],
      [38, 4],
      [0, -1],
    ] as const) {
      await rejectsWith(() => f.read("w", off, len), "RANGE_INVALID", file, ['"w"']);
      assert.throws(() => f.readSync("w", off, len), { code: "RANGE_INVALID" });
    }
    await rejectsWith(() => f.read("w", 0, 8, new Uint8Array(4)), "RANGE_INVALID", file);
    await rejectsWith(() => f.read("nope"), "TENSOR_NOT_FOUND", file, ['"nope"']);

    // A read started before close() completes; reads after it fail.
    const pending = f.read("w");
    await f.close();
    assert.deepEqual(await pending, data);
    await rejectsWith(() => f.read("w"), "IO", file);
    await f.close();
  });

  it("reports a file truncated after it was opened", async () => {
    const file = path.join(dir, "shrinks.safetensors");
    await writeSafetensors(file, [{ name: "w", dtype: "U8", shape: [64], data: patternBytes(64, 3) }]);
    const f = await SafetensorsFile.open(file);
    await fs.truncate(file, f.dataStart + 10);
    await rejectsWith(() => f.read("w"), "IO", file, ["end of file"]);
    await f.close();
  });
});

describe("writer input checks", () => {
  it("refuses data of the wrong size, bad shapes, duplicates and reserved names", async () => {
    const file = path.join(dir, "bad.safetensors");
    await rejectsWith(
      () => writeSafetensors(file, [{ name: "w", dtype: "F32", shape: [2], data: new Uint8Array(7) }]),
      "TENSOR_SIZE_MISMATCH",
      file,
    );
    await assert.rejects(
      writeSafetensors(file, [{ name: "w", dtype: "F4", shape: [3], data: new Uint8Array(2) }]),
      {
        code: "TENSOR_SIZE_MISMATCH",
      },
    );
    const one = { name: "w", dtype: "U8" as const, shape: [1], data: new Uint8Array(1) };
    await assert.rejects(writeSafetensors(file, [one, one]), { code: "DUPLICATE_NAME" });
    await assert.rejects(writeSafetensors(file, [{ ...one, name: "__metadata__" }]), {
      code: "HEADER_INVALID",
    });
    await assert.rejects(writeSafetensors(file, [one], { format: "np" }), { code: "METADATA_INVALID" });
  });

  it("refuses writes outside a tensor and writes after finish", async () => {
    const out = path.join(dir, "bounds");
    const w = await SafetensorsWriter.create(out, [{ name: "w", dtype: "U8", shape: [4] }]);
    const file = path.join(out, "model.safetensors");
    await rejectsWith(() => w.write("w", 1, new Uint8Array(4)), "RANGE_INVALID", file);
    assert.throws(() => w.writeSync("w", -1, new Uint8Array(1)), { code: "RANGE_INVALID" });
    await rejectsWith(() => w.write("x", 0, new Uint8Array(1)), "TENSOR_NOT_FOUND", out);
    await w.write("w", 0, new Uint8Array([1, 2, 3, 4]));
    await w.finish();
    await assert.rejects(w.write("w", 0, new Uint8Array(1)));
  });

  it("never overwrites an existing shard", async () => {
    const out = path.join(dir, "exists");
    await fs.mkdir(out);
    await fs.writeFile(path.join(out, "model.safetensors"), "precious");
    await rejectsWith(
      () => SafetensorsWriter.create(out, [{ name: "w", dtype: "U8", shape: [1] }]),
      "EXISTS",
      path.join(out, "model.safetensors"),
    );
    assert.equal(await fs.readFile(path.join(out, "model.safetensors"), "utf8"), "precious");
  });
});
