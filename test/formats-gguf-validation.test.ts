import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { bytesSource, GgufFile, parseGgufHeader } from "../src/formats/gguf.js";
import { Bytes, f32Bytes, GT, key, preamble, simpleFile, tensorInfo, VT } from "./formats-gguf-fixtures.js";
import { tempDir } from "./helpers/fixtures.js";

let tmp: Awaited<ReturnType<typeof tempDir>>;
let counter = 0;
before(async () => {
  tmp = await tempDir("pma-gguf-");
});
after(() => tmp.cleanup());

/** Writes `bytes` to a file and expects GgufFile.open to refuse it naming the file, the parts, and the byte. */
async function expectInvalid(bytes: Uint8Array, parts: (string | RegExp)[], at?: number): Promise<void> {
  const path = join(tmp.dir, `case-${counter++}.gguf`);
  await writeFile(path, bytes);
  await assert.rejects(GgufFile.open(path), (e) => {
    assert.ok(isPmaError(e, "GGUF_INVALID"), `expected GGUF_INVALID, got ${String(e)}`);
    const msg = (e as Error).message;
    assert.ok(msg.startsWith(`${path}: `), msg);
    for (const p of parts)
      assert.ok(typeof p === "string" ? msg.includes(p) : p.test(msg), `"${msg}" lacks ${String(p)}`);
    if (at !== undefined) assert.ok(msg.includes(`(at byte ${at})`), `"${msg}" should point at byte ${at}`);
    return true;
  });
}

async function openBytes(bytes: Uint8Array): Promise<GgufFile> {
  const path = join(tmp.dir, `ok-${counter++}.gguf`);
  await writeFile(path, bytes);
  return GgufFile.open(path);
}

const W = { name: "w", dims: [3, 2], type: GT.F32, data: f32Bytes([1, 2, 3, 4, 5, 6]) };
const V = { name: "v", dims: [5], type: GT.F32, data: f32Bytes([7, 8, 9, 10, 11]) };

describe("GGUF preamble", () => {
  test("a valid file opens: metadata, dims, torch shape, absolute offsets", async () => {
    const { bytes, dataStart, offsets } = simpleFile([W, V]);
    const f = await openBytes(bytes);
    assert.equal(f.version, 3);
    assert.equal(f.alignment, 32);
    assert.equal(f.dataStart, dataStart);
    assert.deepEqual([...f.metadata], [["test.n", { type: "u32", value: 7 }]]);
    const w = f.tensors.get("w")!;
    assert.deepEqual(
      [w.dims, w.shape, w.typeName, w.dtype, w.byteLength, w.fileOffset],
      [[3, 2], [2, 3], "F32", "F32", 24, dataStart + offsets[0]!],
    );
    assert.deepEqual([...(await f.read("v"))], [...V.data]);
    assert.deepEqual([...(await f.read("w", 8, 8))], [...W.data.subarray(8, 16)]);
    await f.close();
  });

  test("bad magic", async () => {
    const bytes = simpleFile([W]).bytes;
    bytes.write("GGML", 0, "latin1");
    await expectInvalid(bytes, ['"GGML"', "not a GGUF file"], 0);
  });

  test("version 1 is refused with a clear error; 0, big-endian and future versions too; 2 is read", async () => {
    const withVersion = (v: number) => {
      const bytes = simpleFile([W]).bytes;
      bytes.writeUInt32LE(v, 4);
      return bytes;
    };
    await expectInvalid(withVersion(1), ["version 1 is no longer supported"], 4);
    await expectInvalid(withVersion(0), ["version 0"], 4);
    await expectInvalid(withVersion(0x03000000), ["big-endian"], 4);
    await expectInvalid(withVersion(4), ["version 4 is newer"], 4);
    const v2 = await openBytes(withVersion(2));
    assert.equal(v2.version, 2);
    await v2.close();
  });

  test("a file truncated anywhere in the header or data is refused", async () => {
    const { bytes, dataStart } = simpleFile([W, V]);
    const lastEnd = dataStart + 32 + V.data.length;
    for (let cut = 0; cut < lastEnd; cut++) {
      const part = bytes.subarray(0, cut);
      assert.throws(
        () => parseGgufHeader(bytesSource(part), "cut.gguf"),
        (e) =>
          isPmaError(e, "GGUF_INVALID") &&
          /truncated|ends at byte|remain|left in the file/.test((e as Error).message),
        `cut at ${cut}`,
      );
    }
    await expectInvalid(bytes.subarray(0, 6), ["file ends at byte 6 inside the version", "truncated"], 4);
    await expectInvalid(
      bytes.subarray(0, lastEnd - 1),
      ['tensor "v" data', "runs past the end of the file", "truncated"],
      dataStart + 32,
    );
  });

  test("tensor and key counts that the file cannot hold fail before any work", async () => {
    const b = preamble(new Bytes(), 1n << 60n, 0);
    await expectInvalid(b.build(), ["tensor count 1152921504606846976 cannot fit"], 8);
    const k = preamble(new Bytes(), 0, (1n << 64n) - 1n);
    await expectInvalid(k.build(), ["negative as ggml's int64"], 16);
  });
});

describe("GGUF key/values", () => {
  test("a string length beyond the file is refused without allocating it", async () => {
    const b = preamble(new Bytes(), 0, 1);
    b.u64(1n << 40n).raw("general.name");
    await expectInvalid(b.build(), ["key 0 claims 1099511627776 bytes but only 12 remain"], 24);
  });

  test("an array count of 2^60 fails at once, for fixed-size, string and nested elements", async () => {
    for (const [elem, min] of [
      [VT.u8, 1],
      [VT.f64, 8],
      [VT.string, 8],
      [VT.array, 12],
    ] as const) {
      const b = preamble(new Bytes(), 0, 1);
      key(b, "tokenizer.ggml.tokens", VT.array).u32(elem);
      const at = b.length;
      b.u64(1n << 60n).zeros(64);
      await expectInvalid(
        b.build(),
        [
          'key "tokenizer.ggml.tokens" claims 1152921504606846976 elements',
          `at least ${min} bytes each`,
          "only 64 bytes remain",
        ],
        at,
      );
    }
  });

  test("duplicate keys are refused, naming both positions", async () => {
    const b = preamble(new Bytes(), 0, 2);
    const first = b.length;
    key(b, "general.name", VT.string).str("a");
    const second = b.length;
    key(b, "general.name", VT.string).str("b");
    await expectInvalid(b.build(), ['key "general.name" appears twice', `first at byte ${first}`], second);
  });

  test("empty keys, unknown value types, invalid UTF-8 and bad bools are refused", async () => {
    const empty = preamble(new Bytes(), 0, 1).str("").u32(VT.u8).u8(1).zeros(8);
    await expectInvalid(empty.build(), ["key 0 is empty"], 24);
    const unknown = preamble(new Bytes(), 0, 1);
    key(unknown, "x", 13).u32(0);
    await expectInvalid(unknown.build(), ['key "x" value type is 13'], 24 + 8 + 1);
    const elem = preamble(new Bytes(), 0, 1);
    key(elem, "x", VT.array).u32(99).u64(0);
    await expectInvalid(elem.build(), ['key "x" element type is 99'], 24 + 8 + 1 + 4);
    const utf8 = preamble(new Bytes(), 0, 1)
      .str(new Uint8Array([0x61, 0xff]))
      .u32(VT.u8)
      .u8(1);
    await expectInvalid(utf8.build(), ["key 0 is not valid UTF-8"], 32);
    const bool = preamble(new Bytes(), 0, 1);
    key(bool, "flag", VT.bool).u8(2);
    await expectInvalid(bool.build(), ['key "flag" is a bool stored as 2'], 24 + 8 + 4 + 4);
  });

  test("general.alignment must be a u32 power of two; a valid one moves the data", async () => {
    const withAlignment = (type: number, write: (b: Bytes) => void) => {
      const b = preamble(new Bytes(), 0, 1);
      key(b, "general.alignment", type);
      write(b);
      return b.build();
    };
    await expectInvalid(
      withAlignment(VT.u64, (b) => b.u64(32)),
      ['"general.alignment" must be of type u32 but is u64'],
      24,
    );
    await expectInvalid(
      withAlignment(VT.u32, (b) => b.u32(48)),
      ["is 48, not a power of two"],
      24,
    );
    await expectInvalid(
      withAlignment(VT.u32, (b) => b.u32(0)),
      ["is 0, not a power of two"],
      24,
    );
    const { bytes, dataStart } = simpleFile([W, V], 64);
    assert.equal(dataStart % 64, 0);
    const f = await openBytes(bytes);
    assert.equal(f.alignment, 64);
    assert.equal(f.tensors.get("v")!.offset, 64);
    await f.close();
  });

  test("every value type reads with its type, including nested arrays", async () => {
    const b = preamble(new Bytes(), 0, 14);
    key(b, "u8", VT.u8).u8(255);
    key(b, "i8", VT.i8).i8(-128);
    key(b, "u16", VT.u16).u16(65535);
    key(b, "i16", VT.i16).i16(-32768);
    key(b, "u32", VT.u32).u32(4294967295);
    key(b, "i32", VT.i32).i32(-2147483648);
    key(b, "f32", VT.f32).f32(0.1);
    key(b, "bool", VT.bool).u8(1);
    key(b, "string", VT.string).str("héllo 🌍");
    key(b, "u64", VT.u64).u64((1n << 64n) - 1n);
    key(b, "i64", VT.i64).i64(-(1n << 63n));
    key(b, "f64", VT.f64).f64(0.1);
    key(b, "strings", VT.array).u32(VT.string).u64(2).str("a").str("");
    key(b, "nested", VT.array)
      .u32(VT.array)
      .u64(2)
      .u32(VT.i32)
      .u64(2)
      .i32(-1)
      .i32(2)
      .u32(VT.bool)
      .u64(1)
      .u8(0);
    const f = await openBytes(b.build());
    const get = (k: string) => f.metadata.get(k);
    assert.deepEqual(get("u8"), { type: "u8", value: 255 });
    assert.deepEqual(get("i8"), { type: "i8", value: -128 });
    assert.deepEqual(get("u16"), { type: "u16", value: 65535 });
    assert.deepEqual(get("i16"), { type: "i16", value: -32768 });
    assert.deepEqual(get("u32"), { type: "u32", value: 4294967295 });
    assert.deepEqual(get("i32"), { type: "i32", value: -2147483648 });
    assert.deepEqual(get("f32"), { type: "f32", value: Math.fround(0.1) });
    assert.deepEqual(get("bool"), { type: "bool", value: true });
    assert.deepEqual(get("string"), { type: "string", value: "héllo 🌍" });
    assert.deepEqual(get("u64"), { type: "u64", value: (1n << 64n) - 1n });
    assert.deepEqual(get("i64"), { type: "i64", value: -(1n << 63n) });
    assert.deepEqual(get("f64"), { type: "f64", value: 0.1 });
    assert.deepEqual(get("strings"), { type: "array", elementType: "string", values: ["a", ""] });
    assert.deepEqual(get("nested"), {
      type: "array",
      elementType: "array",
      values: [
        { type: "array", elementType: "i32", values: Int32Array.from([-1, 2]) },
        { type: "array", elementType: "bool", values: [false] },
      ],
    });
    assert.deepEqual(
      [...f.metadata.keys()],
      [
        "u8",
        "i8",
        "u16",
        "i16",
        "u32",
        "i32",
        "f32",
        "bool",
        "string",
        "u64",
        "i64",
        "f64",
        "strings",
        "nested",
      ],
    );
    assert.equal(f.tensors.size, 0);
    await f.close();
  });
});

describe("GGUF tensor infos", () => {
  /** One-key file whose tensor infos are written by `infos`; returns bytes and where infos start. */
  function withInfos(
    count: number,
    infos: (b: Bytes) => void,
    data = 64,
  ): { bytes: Buffer; infoStart: number } {
    const b = preamble(new Bytes(), count, 1);
    key(b, "test.n", VT.u32).u32(7);
    const infoStart = b.length;
    infos(b);
    b.pad(32).zeros(data);
    return { bytes: b.build(), infoStart };
  }

  test("names: duplicates refused, 63 bytes accepted, 64 refused (ggml's GGML_MAX_NAME)", async () => {
    const dup = withInfos(2, (b) => {
      tensorInfo(b, "a", [4], GT.F32, 0);
      tensorInfo(b, "a", [4], GT.F32, 32);
    });
    await expectInvalid(dup.bytes, ['tensor "a" appears twice'], dup.infoStart + 8 + 1 + 4 + 8 + 4 + 8);
    const ok = withInfos(1, (b) => tensorInfo(b, "n".repeat(63), [4], GT.F32, 0));
    const f = await openBytes(ok.bytes);
    assert.ok(f.tensors.has("n".repeat(63)));
    await f.close();
    const long = withInfos(1, (b) => tensorInfo(b, "n".repeat(64), [4], GT.F32, 0));
    await expectInvalid(
      long.bytes,
      ["tensor info 0: name of 64 bytes is longer than ggml's limit of 63"],
      long.infoStart,
    );
  });

  test("more than 4 dims, negative and overflowing dims are refused", async () => {
    const five = withInfos(1, (b) => tensorInfo(b, "t", [1, 1, 1, 1, 1], GT.F32, 0));
    await expectInvalid(
      five.bytes,
      ['tensor "t" has 5 dimensions; ggml allows at most 4'],
      five.infoStart + 9,
    );
    const negative = withInfos(1, (b) =>
      b
        .str("t")
        .u32(1)
        .u64((1n << 64n) - 1n)
        .u32(GT.F32)
        .u64(0),
    );
    await expectInvalid(
      negative.bytes,
      ['tensor "t" dimension 0 is 18446744073709551615, negative'],
      negative.infoStart + 13,
    );
    const huge = withInfos(1, (b) =>
      b
        .str("t")
        .u32(1)
        .u64(1n << 53n)
        .u32(GT.F32)
        .u64(0),
    );
    await expectInvalid(
      huge.bytes,
      ['tensor "t" dimension 0 is 9007199254740992; its size overflows'],
      huge.infoStart + 13,
    );
    const product = withInfos(1, (b) => tensorInfo(b, "t", [2 ** 32, 2 ** 32], GT.F32, 0));
    await expectInvalid(
      product.bytes,
      ['tensor "t" (F32, dims [4294967296, 4294967296])', "overflows 2^53"],
      product.infoStart + 9,
    );
  });

  test("unknown, removed and block-misfit ggml types are refused; quantized sizes are exact", async () => {
    const unknown = withInfos(1, (b) => tensorInfo(b, "t", [4], 99, 0));
    await expectInvalid(
      unknown.bytes,
      ['tensor "t": unknown ggml type 99'],
      unknown.infoStart + 8 + 1 + 4 + 8,
    );
    const removed = withInfos(1, (b) => tensorInfo(b, "t", [32], 31, 0));
    await expectInvalid(removed.bytes, ["ggml type 31 (Q4_0_4_4) was removed"]);
    const misfit = withInfos(1, (b) => tensorInfo(b, "t", [16, 2], GT.Q4_0, 0));
    await expectInvalid(misfit.bytes, ["row length ne0 = 16 is not a multiple of the Q4_0 block size 32"]);
    // Q4_K: 256 elements per 144-byte block (2 + 2 + 128 + 12); Q8_0: 32 per 34 bytes.
    const quant = withInfos(
      2,
      (b) => {
        tensorInfo(b, "k", [512, 3], GT.Q4_K, 0);
        tensorInfo(b, "q", [64], GT.Q8_0, 6 * 144);
      },
      6 * 144 + 68,
    );
    const f = await openBytes(quant.bytes);
    assert.deepEqual(
      [f.tensors.get("k")!.byteLength, f.tensors.get("k")!.typeName, f.tensors.get("k")!.dtype],
      [6 * 144, "Q4_K", null],
    );
    assert.equal(f.tensors.get("q")!.byteLength, 68);
    await f.close();
  });

  test("offsets: misaligned, overlapping, gapped and beyond the end of the file are refused", async () => {
    const layout = (offsets: (number | bigint)[]) => {
      const r = withInfos(2, (b) => {
        tensorInfo(b, "a", [4], GT.F32, offsets[0]!);
        tensorInfo(b, "b", [4], GT.F32, offsets[1]!);
      });
      const dataStart = Math.ceil((r.infoStart + 2 * (8 + 1 + 4 + 8 + 4 + 8)) / 32) * 32;
      return { ...r, dataStart };
    };
    const ok = layout([0, 32]);
    await (await openBytes(ok.bytes)).close();
    const misaligned = layout([0, 8]);
    await expectInvalid(
      misaligned.bytes,
      ['tensor "b" data offset 8 is not a multiple of the alignment 32'],
      misaligned.dataStart + 8,
    );
    const overlap = layout([0, 0]);
    await expectInvalid(
      overlap.bytes,
      ['tensor "b" data offset 0 overlaps tensor "a", whose data runs to 32'],
      overlap.dataStart,
    );
    const gap = layout([0, 64]);
    await expectInvalid(
      gap.bytes,
      ['tensor "b" data offset 64 leaves a gap of 32 bytes after tensor "a"', "expected 32"],
      gap.dataStart + 64,
    );
    const first = layout([32, 64]);
    await expectInvalid(first.bytes, [
      'tensor "a" data offset 32 leaves a gap of 32 bytes after the start of the data section',
    ]);
    const beyond = layout([0, 1n << 40n]);
    await expectInvalid(beyond.bytes, [
      'tensor "b" data offset 1099511627776 lies beyond the end of the file',
    ]);
  });

  test("a data section that is not padded to the alignment is refused with a hint", async () => {
    const b = preamble(new Bytes(), 1, 1);
    key(b, "test.n", VT.u32).u32(7);
    tensorInfo(b, "w", W.dims, W.type, 0);
    const infoEnd = b.length;
    assert.notEqual(infoEnd % 32, 0, "the fixture needs padding to matter");
    b.raw(W.data); // no padding: data starts right after the infos
    await expectInvalid(b.build(), [
      'tensor "w" data',
      "runs past the end of the file",
      `left out the padding between the tensor infos (ending at ${infoEnd}) and the data`,
    ]);
  });

  test("no tensors needs no data section; trailing bytes after the data are allowed (as in ggml)", async () => {
    const empty = preamble(new Bytes(), 0, 1);
    key(empty, "test.n", VT.u32).u32(7);
    const f = await openBytes(empty.build());
    assert.equal(f.dataStart, f.infoEnd);
    await f.close();
    const trailing = await openBytes(Buffer.concat([simpleFile([W]).bytes, Buffer.alloc(100, 7)]));
    assert.deepEqual([...(await trailing.read("w"))], [...W.data]);
    await trailing.close();
  });

  test("reads outside a tensor and after close are refused", async () => {
    const f = await openBytes(simpleFile([W]).bytes);
    await assert.rejects(f.read("w", 20, 8), (e) => isPmaError(e, "RANGE_INVALID"));
    await assert.rejects(f.read("nope"), (e) => isPmaError(e, "TENSOR_NOT_FOUND"));
    await f.close();
    await assert.rejects(f.read("w"), (e) => isPmaError(e, "IO"));
  });
});
