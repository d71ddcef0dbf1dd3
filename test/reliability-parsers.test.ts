/**
 * Hostile inputs for every reader of untrusted files, each checked for the three
 * parser guarantees: the reader returns or throws a PmaError with a code; it allocates
 * in proportion to the file's real size, never to a number the file claims (every
 * typed array, ArrayBuffer and Buffer it makes is metered); and it finishes (the
 * node:test timeouts bound the slowest of these to seconds where they took minutes).
 */
import assert from "node:assert/strict";
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { openCheckpointTensors } from "../src/formats/checkpoint-files.js";
import { maskedCrc32c } from "../src/formats/crc32c.js";
import { GgufFile, parseGgufHeader, bytesSource } from "../src/formats/gguf.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { parseTensorboardEvents } from "../src/formats/tensorboard.js";
import { readTrainerState } from "../src/formats/trainer-state.js";
import { parseCsvLog, parsePmaJsonl, parseTrainerState } from "../src/trajectory/logs.js";
import { budgetFor, installMeter, meterViolation, pauseMeter, resetMeter } from "../fuzz/meter.js";
import { frameRecord } from "../fuzz/targets/tensorboard.js";
import { Bytes, key, preamble, tensorInfo, VT, GT } from "./formats-gguf-fixtures.js";
import { tempDir } from "./helpers/fixtures.js";

installMeter();

/** Runs `read` with allocations metered against the budget of a `size`-byte input. */
async function metered<T>(
  size: number,
  read: () => Promise<T> | T,
): Promise<{ value?: T; error?: unknown; allocated: number }> {
  resetMeter(budgetFor(size));
  try {
    return { value: await read(), allocated: pauseMeter() };
  } catch (error) {
    return { error, allocated: pauseMeter() };
  } finally {
    const v = meterViolation();
    pauseMeter();
    assert.equal(v, null, `allocation beyond the budget for ${size} bytes: ${v?.message}`);
  }
}

async function refuses(
  size: number,
  read: () => Promise<unknown> | unknown,
  code: string,
  message?: RegExp,
): Promise<void> {
  const r = await metered(size, read);
  assert.ok(r.error !== undefined, "expected the input to be refused");
  assert.ok(
    isPmaError(r.error, code as never),
    `expected PmaError ${code}, got ${String((r.error as Error).stack ?? r.error)}`,
  );
  if (message) assert.match((r.error as Error).message, message);
}

function safetensors(header: string, data = new Uint8Array(0), claimed?: bigint): Buffer {
  const json = Buffer.from(header, "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(claimed ?? BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

/** A sparse file: `head`, then zeros up to `size` bytes that take no disk space. */
function sparse(path: string, head: Uint8Array, size: number): void {
  const fd = openSync(path, "w");
  try {
    writeSync(fd, head);
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
}

describe("safetensors reader on hostile headers", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir("pma-hostile-");
  });
  after(() => tmp.cleanup());

  const open = async (name: string, bytes: Uint8Array) => {
    const p = join(tmp.dir, name);
    await writeFile(p, bytes);
    return () => SafetensorsFile.open(p);
  };

  test("a header length of 2^64-1, or 99,999,999 in a 100-byte file, is refused before anything that size is allocated", async () => {
    const huge = safetensors("{}", new Uint8Array(0), (1n << 64n) - 1n);
    await refuses(huge.length, await open("huge.safetensors", huge), "HEADER_TOO_LARGE");
    const short = safetensors("{}".padEnd(92), new Uint8Array(0), 99_999_999n);
    await refuses(short.length, await open("short.safetensors", short), "FILE_TOO_SHORT");
  });

  test("a shape whose element or byte count overflows 2^53 is refused, not rounded", async () => {
    for (const shape of [
      "[4294967296,4294967296,4294967296]",
      "[9007199254740993]",
      "[1e300]",
      "[3037000500,3037000500]",
    ]) {
      const f = safetensors(`{"t":{"dtype":"F32","shape":${shape},"data_offsets":[0,4]}}`, new Uint8Array(4));
      await refuses(
        f.length,
        await open("shape.safetensors", f),
        "TENSOR_SIZE_MISMATCH",
        /overflows 2\^53|below 2\^53/,
      );
    }
    const offsets = safetensors(
      `{"t":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,18446744073709551616]}}`,
      new Uint8Array(1),
    );
    await refuses(
      offsets.length,
      await open("offsets.safetensors", offsets),
      "OFFSETS_INVALID",
      /beyond 2\^53/,
    );
  });

  test(
    "a 99 MB header of nested JSON is refused at once (it took 25-30 s and 4-5 GB of memory)",
    { timeout: 60_000 },
    async () => {
      const depth = 49_500_000;
      for (const [name, json] of [
        ["arrays", "[".repeat(depth) + "]".repeat(depth)],
        ["objects", '{"a":'.repeat(16_500_000) + "0" + "}".repeat(16_500_000)],
      ] as const) {
        const f = safetensors(json);
        const read = await open(`nested-${name}.safetensors`, f);
        const rssBefore = process.resourceUsage().maxRSS;
        await refuses(f.length, read, "HEADER_INVALID", /nesting deeper than 128 levels/);
        // maxRSS is the high-water mark in KiB: the refusal must not have parsed the nesting.
        assert.ok(
          process.resourceUsage().maxRSS - rssBefore < 1024 * 1024,
          `${name}: memory grew by ${(process.resourceUsage().maxRSS - rssBefore) >> 10} MiB`,
        );
      }
    },
  );

  test(
    "an object of 2^21+1 keys is refused before JSON.parse (9M keys took minutes)",
    { timeout: 60_000 },
    async () => {
      const keys = Array.from({ length: (1 << 21) + 1 }, (_, i) => `"${i.toString(36)}":0`).join(",");
      const f = safetensors(`{${keys}}`);
      await refuses(
        f.length,
        await open("keys.safetensors", f),
        "HEADER_INVALID",
        /more than 2097152 keys in one object/,
      );
    },
  );

  test("a shard index nested 129 deep or naming a shard through .. is refused", async () => {
    const dir = join(tmp.dir, "idx");
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, "model.safetensors.index.json"),
      `{"weight_map":{"a":"x.safetensors"},"metadata":${"[".repeat(129)}${"]".repeat(129)}}`,
    );
    await refuses(4096, () => openCheckpointTensors(dir), "INDEX_INVALID", /nesting deeper than 128/);
    await writeFile(join(dir, "model.safetensors.index.json"), `{"weight_map":{"a":"../x.safetensors"}}`);
    await refuses(4096, () => openCheckpointTensors(dir), "PATH_UNSAFE");
  });
});

describe("GGUF reader on hostile headers", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir("pma-hostile-gguf-");
  });
  after(() => tmp.cleanup());

  const parse = (bytes: Buffer) => () => parseGgufHeader(bytesSource(bytes), "h.gguf");

  test("counts of 2^60 (array elements, string bytes, tensors, keys) fail without allocating", async () => {
    const cases = [
      key(preamble(new Bytes(), 0, 1), "a", VT.array)
        .u32(VT.u8)
        .u64(1n << 60n)
        .build(),
      key(preamble(new Bytes(), 0, 1), "a", VT.array)
        .u32(VT.string)
        .u64(1n << 60n)
        .build(),
      key(preamble(new Bytes(), 0, 1), "a", VT.string)
        .u64(1n << 60n)
        .build(),
      preamble(new Bytes(), 1n << 60n, 0).build(),
      preamble(new Bytes(), 0, 1n << 60n).build(),
    ];
    for (const c of cases) await refuses(c.length, parse(c), "GGUF_INVALID");
  });

  test("dims whose product overflows, and arrays nested 17 deep, are refused", async () => {
    const dims = tensorInfo(preamble(new Bytes(), 1, 0), "t", [1 << 30, 1 << 30, 1 << 30], GT.F32, 0).build();
    await refuses(dims.length, parse(dims), "GGUF_INVALID", /overflows/);
    const nested = key(preamble(new Bytes(), 0, 1), "a", VT.array);
    for (let i = 0; i < 18; i++) nested.u32(VT.array).u64(1);
    nested.u32(VT.u8).u64(0);
    const bytes = nested.build();
    await refuses(bytes.length, parse(bytes), "GGUF_INVALID", /nests arrays more than 16 deep/);
  });

  test(
    "a bool array of 150M elements is refused (it ended the process: V8's array limit is ~134M)",
    { timeout: 60_000 },
    async () => {
      const head = key(preamble(new Bytes(), 0, 1), "a", VT.array)
        .u32(VT.bool)
        .u64(150_000_000)
        .build();
      const p = join(tmp.dir, "bools.gguf");
      // Zeros are valid bools ("false"), and a sparse file costs no disk.
      sparse(p, head, head.length + 150_000_000);
      await refuses(
        1 << 20,
        () => GgufFile.open(p),
        "GGUF_INVALID",
        /more than the 16777216 string, bool and array elements/,
      );
    },
  );

  test("a string, bool and array budget is shared by the whole header", async () => {
    const b = preamble(new Bytes(), 0, 2);
    key(b, "a", VT.array)
      .u32(VT.bool)
      .u64(1 << 23)
      .zeros(1 << 23);
    key(b, "b", VT.array)
      .u32(VT.bool)
      .u64((1 << 23) + 1)
      .zeros((1 << 23) + 1);
    const bytes = b.build();
    await refuses(bytes.length, parse(bytes), "GGUF_INVALID", /key "b".* more than the 16777216/);
  });

  test(
    "a tensor count above 2^24-1 is refused at the count (a Map cannot hold it)",
    { timeout: 60_000 },
    async () => {
      const head = preamble(new Bytes(), 1 << 24, 0).build();
      const p = join(tmp.dir, "tensors.gguf");
      sparse(p, head, head.length + 24 * (1 << 24));
      await refuses(
        1 << 20,
        () => GgufFile.open(p),
        "GGUF_INVALID",
        /tensor count 16777216 is more than the 16777215 pma reads/,
      );
    },
  );
});

describe("training-log readers on hostile logs", () => {
  test("a TensorBoard record claiming 2^40 bytes is a tail still being written, not an allocation", async () => {
    const good = frameRecord(new Uint8Array([0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]));
    // A length with a matching CRC, so it is believed: the file just cannot hold it yet.
    const claim = Buffer.alloc(12);
    claim.writeBigUInt64LE(1n << 40n);
    claim.writeUInt32LE(maskedCrc32c(claim.subarray(0, 8)), 8);
    const file = Buffer.concat([good, claim]);
    const r = await metered(file.length, () => parseTensorboardEvents(file));
    assert.equal(r.error, undefined);
    assert.equal(r.value!.records, 1);
    assert.equal(r.value!.ignoredTailBytes, 12);
  });

  test("JSON logs nested deeper than Python can write are refused", async () => {
    const deep = `{"log_history":${"[".repeat(1001)}${"]".repeat(1001)}}`;
    await refuses(
      deep.length,
      () => parseTrainerState(deep, "trainer_state.json"),
      "LOG_INVALID",
      /nesting deeper than 1000/,
    );
    await refuses(
      deep.length,
      () => parsePmaJsonl(`{"type":"step","step":1,"loss":1}\n${deep}\n`, "log.jsonl"),
      "LOG_INVALID",
    );
    const t = await tempDir("pma-hostile-ts-");
    try {
      await writeFile(join(t.dir, "trainer_state.json"), deep);
      await refuses(deep.length, () => readTrainerState(t.dir), "LOG_INVALID", /nesting deeper than 1000/);
    } finally {
      await t.cleanup();
    }
  });

  test(
    "many restarts stay linear: 400k evals then 400k steps going back (minutes before, quadratic)",
    { timeout: 60_000 },
    () => {
      const n = 400_000;
      const lines: string[] = [];
      for (let i = 0; i < n; i++) lines.push(`{"type":"eval","step":${i},"val_loss":1}`);
      for (let i = 0; i < n; i++) lines.push(`{"type":"step","step":${3 * n - i},"loss":1}`);
      const log = parsePmaJsonl(lines.join("\n") + "\n", "log.jsonl");
      assert.equal(log.restarts, n - 1);
      // Each step going back dropped the one after it: the evals and the last step remain.
      assert.equal(log.points.length, n + 1);
      assert.equal(log.points.at(-1)!.step, 2 * n + 1);
    },
  );

  test(
    "a CSV of 135M empty lines is read (text.split made an array past V8's limit, ending the process)",
    { timeout: 120_000 },
    () => {
      const text = "step,loss\n1,2\n" + "\n".repeat(135_000_000) + "2,3\n";
      const log = parseCsvLog(text, "m.csv");
      assert.deepEqual(
        log.points.map((p) => [p.step, p.loss]),
        [
          [1, 2],
          [2, 3],
        ],
      );
    },
  );
});
