import * as assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { parseSafetensorsHeader, SafetensorsFile } from "../src/formats/safetensors.js";
import { rawSafetensors, rejectsWith, tempDir } from "./formats-safetensors-fixtures.js";

// Every malformed file here is assembled byte by byte from the format's definition,
// each breaking exactly one rule of the reference reader.

let dir = "";
let cleanup: () => Promise<void> = async () => {};
let counter = 0;

before(async () => {
  ({ dir, cleanup } = await tempDir());
});
after(() => cleanup());

async function put(bytes: Uint8Array): Promise<string> {
  const p = path.join(dir, `f${counter++}.safetensors`);
  await fs.writeFile(p, bytes);
  return p;
}

async function openFails(
  bytes: Uint8Array,
  code: Parameters<typeof rejectsWith>[1],
  mentions: string[] = [],
): Promise<void> {
  const p = await put(bytes);
  await rejectsWith(() => SafetensorsFile.open(p), code, p, mentions);
}

const f32 = (name: string, shape: number[], begin: number, end: number) =>
  `${JSON.stringify(name)}:{"dtype":"F32","shape":${JSON.stringify(shape)},"data_offsets":[${begin},${end}]}`;

describe("header length", () => {
  it("rejects N above 100,000,000 without reading it", async () => {
    await openFails(rawSafetensors("{}", 0, 100_000_001n), "HEADER_TOO_LARGE", ["100000001"]);
    await openFails(rawSafetensors("{}", 0, 0xffff_ffff_ffff_ffffn), "HEADER_TOO_LARGE");
  });

  it("accepts N = 100,000,000 as a length but then needs the bytes to exist", async () => {
    await openFails(rawSafetensors("{}", 0, 100_000_000n), "FILE_TOO_SHORT");
  });

  it("rejects a file shorter than the 8-byte prefix", async () => {
    await openFails(new Uint8Array([2, 0, 0]), "FILE_TOO_SHORT");
    await openFails(new Uint8Array(0), "FILE_TOO_SHORT");
  });

  it("rejects a header cut short", async () => {
    const whole = rawSafetensors(`{${f32("a", [1], 0, 4)}}`, 4);
    await openFails(whole.subarray(0, 20), "FILE_TOO_SHORT");
  });

  it("applies the same limits in the pure parser", () => {
    const bytes = new TextEncoder().encode("{}");
    assert.throws(() => parseSafetensorsHeader(bytes, 9, "x.safetensors"), { code: "FILE_TOO_SHORT" });
    assert.deepEqual(parseSafetensorsHeader(bytes, 10, "x.safetensors").tensors, []);
  });
});

describe("header content", () => {
  it("rejects bytes that are not UTF-8", async () => {
    const h = new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]); // {"\xff\xfe":1}
    await openFails(rawSafetensors(h, 0), "HEADER_INVALID", ["UTF-8"]);
  });

  it("rejects text that is not JSON", async () => {
    await openFails(rawSafetensors("{not json", 0), "HEADER_INVALID");
    await openFails(rawSafetensors("", 0), "HEADER_INVALID");
  });

  it("rejects a byte-order mark before the JSON", async () => {
    await openFails(rawSafetensors(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), 0), "HEADER_INVALID");
  });

  it("rejects JSON that is not an object", async () => {
    await openFails(rawSafetensors("[]", 0), "HEADER_INVALID");
    await openFails(rawSafetensors("null", 0), "HEADER_INVALID");
    await openFails(rawSafetensors('"x"', 0), "HEADER_INVALID");
  });

  it("rejects entries of the wrong shape, naming the tensor", async () => {
    const cases = [
      `{"w":[1,2]}`,
      `{"w":{"dtype":3,"shape":[1],"data_offsets":[0,4]}}`,
      `{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`,
      `{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`,
      `{"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}}`,
      `{"w":{"dtype":"F32","data_offsets":[0,4]}}`,
      `{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`,
      `{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`,
      `{"w":{"dtype":"F32","shape":[1]}}`,
    ];
    for (const h of cases) await openFails(rawSafetensors(h, 4), "HEADER_INVALID", ['"w"']);
  });

  it("rejects an unknown dtype, naming dtype and tensor", async () => {
    await openFails(
      rawSafetensors(`{"layer.0":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, 16),
      "DTYPE_UNKNOWN",
      ["F128", "layer.0"],
    );
  });
});

describe("tensor sizes", () => {
  it("rejects offsets that disagree with shape and dtype", async () => {
    await openFails(rawSafetensors(`{${f32("w", [2, 2], 0, 15)}}`, 15), "TENSOR_SIZE_MISMATCH", [
      '"w"',
      "16",
      "15",
    ]);
    await openFails(rawSafetensors(`{${f32("w", [2, 2], 0, 17)}}`, 17), "TENSOR_SIZE_MISMATCH");
  });

  it("rejects shapes whose element count overflows 2^53", async () => {
    // 2^32 * 2^32 = 2^64: also an overflow for the reference's u64 arithmetic.
    await openFails(
      rawSafetensors(`{${f32("w", [4294967296, 4294967296], 0, 0)}}`, 0),
      "TENSOR_SIZE_MISMATCH",
      ["overflow"],
    );
    // The overflow is checked step by step, so a trailing zero does not hide it.
    await openFails(
      rawSafetensors(`{${f32("w", [4294967296, 4294967296, 0], 0, 0)}}`, 0),
      "TENSOR_SIZE_MISMATCH",
      ["overflow"],
    );
    // 2^52 F32 elements are 2^54 bytes.
    await openFails(rawSafetensors(`{${f32("w", [4503599627370496], 0, 0)}}`, 0), "TENSOR_SIZE_MISMATCH", [
      "overflow",
    ]);
  });

  it("rejects sub-byte tensors that do not fill whole bytes", async () => {
    const h = `{"q":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}`;
    await openFails(rawSafetensors(h, 1), "TENSOR_SIZE_MISMATCH", ['"q"', "bytes"]);
    const h6 = `{"q":{"dtype":"F6_E2M3","shape":[2],"data_offsets":[0,1]}}`;
    await openFails(rawSafetensors(h6, 1), "TENSOR_SIZE_MISMATCH");
  });
});

describe("offsets", () => {
  it("rejects a gap between tensors", async () => {
    await openFails(
      rawSafetensors(`{${f32("a", [1], 0, 4)},${f32("b", [1], 8, 12)}}`, 12),
      "OFFSETS_INVALID",
      ["gap", '"b"'],
    );
  });

  it("rejects overlapping tensors", async () => {
    await openFails(
      rawSafetensors(`{${f32("a", [2], 0, 8)},${f32("b", [2], 4, 12)}}`, 12),
      "OFFSETS_INVALID",
      ["overlap"],
    );
  });

  it("rejects a buffer that does not start at 0", async () => {
    await openFails(rawSafetensors(`{${f32("a", [1], 4, 8)}}`, 8), "OFFSETS_INVALID", ["offset 0"]);
  });

  it("rejects an end before the begin", async () => {
    await openFails(rawSafetensors(`{${f32("a", [1], 8, 4)}}`, 8), "OFFSETS_INVALID");
  });

  it("rejects offsets beyond 2^53", async () => {
    await openFails(
      rawSafetensors(`{${f32("a", [1], 18014398509481984, 18014398509481988)}}`, 0),
      "OFFSETS_INVALID",
    );
  });

  it("accepts tensors listed out of offset order and returns them in file order", async () => {
    const p = await put(rawSafetensors(`{${f32("late", [1], 4, 8)},${f32("early", [1], 0, 4)}}`, 8));
    const f = await SafetensorsFile.open(p);
    assert.deepEqual([...f.tensors.keys()], ["early", "late"]);
    await f.close();
  });
});

describe("data length", () => {
  it("rejects bytes after the last tensor", async () => {
    await openFails(rawSafetensors(`{${f32("a", [1], 0, 4)}}`, 7), "DATA_LENGTH_MISMATCH", ["3 bytes after"]);
  });

  it("rejects a data buffer cut short", async () => {
    await openFails(rawSafetensors(`{${f32("a", [2], 0, 8)}}`, 5), "DATA_LENGTH_MISMATCH", ["truncated"]);
  });

  it("rejects data in a file whose header lists no tensors", async () => {
    await openFails(rawSafetensors("{}", 1), "DATA_LENGTH_MISMATCH");
  });
});

describe("duplicates", () => {
  it("rejects a tensor name given twice", async () => {
    await openFails(rawSafetensors(`{${f32("a", [1], 0, 4)},${f32("a", [1], 4, 8)}}`, 8), "DUPLICATE_NAME", [
      '"a"',
    ]);
  });

  it('sees through escapes: "a" and "\\u0061" are the same key', async () => {
    await openFails(
      rawSafetensors(
        `{${f32("a", [1], 0, 4)},"\\u0061":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`,
        8,
      ),
      "DUPLICATE_NAME",
    );
  });

  it("rejects a field given twice inside an entry", async () => {
    const h = `{"w":{"dtype":"F16","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`;
    await openFails(rawSafetensors(h, 4), "DUPLICATE_NAME", ["dtype", '"w"']);
  });

  it("rejects __metadata__ given twice", async () => {
    await openFails(
      rawSafetensors(`{"__metadata__":{"format":"pt"},"__metadata__":{}}`, 0),
      "DUPLICATE_NAME",
    );
  });

  it("is not fooled by key-like text inside strings", async () => {
    const h = `{"__metadata__":{"note":"\\"a\\": {\\"a\\":1}","a\\"":"x"},${f32("a", [1], 0, 4)}}`;
    const f = await SafetensorsFile.open(await put(rawSafetensors(h, 4)));
    assert.equal(f.metadata.note, '"a": {"a":1}');
    assert.equal(f.metadata['a"'], "x");
    await f.close();
  });
});

describe("metadata", () => {
  it("rejects non-string values", async () => {
    await openFails(rawSafetensors(`{"__metadata__":{"format":"pt","step":100}}`, 0), "METADATA_INVALID", [
      "step",
    ]);
    await openFails(rawSafetensors(`{"__metadata__":{"x":null}}`, 0), "METADATA_INVALID");
    await openFails(rawSafetensors(`{"__metadata__":{"x":{"y":"z"}}}`, 0), "METADATA_INVALID");
  });

  it("rejects metadata that is not an object", async () => {
    await openFails(rawSafetensors(`{"__metadata__":["pt"]}`, 0), "METADATA_INVALID");
    await openFails(rawSafetensors(`{"__metadata__":"pt"}`, 0), "METADATA_INVALID");
  });

  it("keeps a __proto__ key as plain data", async () => {
    const f = await SafetensorsFile.open(
      await put(rawSafetensors(`{"__metadata__":{"__proto__":"x","format":"pt"}}`, 0)),
    );
    assert.deepEqual(Object.keys(f.metadata).sort(), ["__proto__", "format"]);
    assert.equal(Object.getPrototypeOf(f.metadata), Object.prototype);
    await f.close();
  });
});

describe("legal edge cases", () => {
  it("reads the reference implementation's documented example file", async () => {
    // From the safetensors docs: N = 60 ('<'), an I32 [2,2] tensor of 16 zero bytes.
    const header = `{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}`;
    assert.equal(header.length, 60);
    const f = await SafetensorsFile.open(await put(rawSafetensors(header, 16)));
    assert.deepEqual(f.tensors.get("test"), {
      name: "test",
      dtype: "I32",
      shape: [2, 2],
      byteLength: 16,
      fileOffset: 68,
    });
    assert.equal(f.headerSize, 60);
    assert.equal(f.dataStart, 68);
    assert.deepEqual(f.metadata, {});
    await f.close();
  });

  it("accepts scalars, zero-element tensors, padding and an empty file", async () => {
    const header = `{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"z":{"dtype":"BF16","shape":[0,3],"data_offsets":[8,8]},"z2":{"dtype":"F4","shape":[5,0],"data_offsets":[8,8]}}     `;
    const f = await SafetensorsFile.open(await put(rawSafetensors(header, 8)));
    assert.deepEqual(f.tensors.get("s")?.shape, []);
    assert.equal(f.tensors.get("s")?.byteLength, 8);
    assert.equal(f.tensors.get("z")?.byteLength, 0);
    assert.equal(f.tensors.get("z2")?.byteLength, 0);
    assert.equal((await f.read("z")).length, 0);
    await f.close();
    const empty = await SafetensorsFile.open(await put(rawSafetensors("{}", 0)));
    assert.equal(empty.tensors.size, 0);
    await empty.close();
  });

  it("ignores unknown fields in an entry, as the reference does", async () => {
    const header = `{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"extra":true}}`;
    const f = await SafetensorsFile.open(await put(rawSafetensors(header, 2)));
    assert.equal(f.tensors.get("w")?.byteLength, 2);
    await f.close();
  });

  it("refuses a directory and a missing file with IO errors", async () => {
    await rejectsWith(() => SafetensorsFile.open(dir), "IO", dir);
    const missing = path.join(dir, "missing.safetensors");
    await rejectsWith(() => SafetensorsFile.open(missing), "IO", missing);
  });
});
