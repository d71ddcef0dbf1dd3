import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isPmaError } from "../src/common/errors.js";
import {
  parseTensorboardEvents,
  readTensorboardFile,
  tensorboardScalars,
  type TensorboardScalar,
} from "../src/formats/tensorboard.js";
import { writeTensorboardScalars } from "../src/formats/tensorboard-writer.js";

// ---- An independent encoder, written from the protobuf wire-format spec and the TFRecord
// ---- framing, sharing no code with the library.

function bitwiseCrc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function mask(crc: number): number {
  const c = BigInt(crc);
  return Number(((((c >> 15n) | (c << 17n)) & 0xffffffffn) + 0xa282ead8n) & 0xffffffffn);
}

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
}

/** Base-128 varint of a BigInt, two's complement for negatives (int64 semantics). */
function varint(v: bigint | number): number[] {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  do {
    const b = Number(x & 127n);
    x >>= 7n;
    out.push(x > 0n ? b | 128 : b);
  } while (x > 0n);
  return out;
}

const key = (field: number, wire: number) => varint((field << 3) | wire);
const len = (field: number, payload: number[]) => [...key(field, 2), ...varint(payload.length), ...payload];
const utf8 = (s: string) => [...new TextEncoder().encode(s)];
function f64(x: number): number[] {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, x, true);
  return [...b];
}
function f32(x: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return [...b];
}

function event(fields: {
  wallTime?: number;
  step?: bigint | number;
  values?: number[][];
  extra?: number[];
}): number[] {
  const out: number[] = [];
  if (fields.wallTime !== undefined) out.push(...key(1, 1), ...f64(fields.wallTime));
  if (fields.step !== undefined) out.push(...key(2, 0), ...varint(fields.step));
  if (fields.extra) out.push(...fields.extra);
  if (fields.values)
    out.push(
      ...len(
        5,
        fields.values.flatMap((v) => len(1, v)),
      ),
    );
  return out;
}

const simpleValue = (tag: string, x: number) => [...len(1, utf8(tag)), ...key(2, 5), ...f32(x)];
const tensorValue = (tag: string, tensor: number[]) => [...len(1, utf8(tag)), ...len(8, tensor)];
const scalarShape = len(2, []); // TensorShapeProto with no dims: rank 0

function record(data: number[]): number[] {
  return [...recordBytes(Uint8Array.from(data))];
}

/** Framing without array spreads, for records too large for the call stack. */
function recordBytes(data: Uint8Array): Uint8Array {
  const lenBytes = Uint8Array.from([...u32(data.length), 0, 0, 0, 0]);
  const out = new Uint8Array(16 + data.length);
  out.set(lenBytes, 0);
  out.set(u32(mask(bitwiseCrc32c(lenBytes))), 8);
  out.set(data, 12);
  out.set(u32(mask(bitwiseCrc32c(data))), 12 + data.length);
  return out;
}

const fileVersion = record(event({ wallTime: 1700000000.5, extra: len(3, utf8("brain.Event:2")) }));

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "pma-tb-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- Tests

test("reads simple_value scalars and every scalar-tensor encoding, from hand-built records", () => {
  const bytes = Uint8Array.from([
    ...fileVersion,
    ...record(
      event({
        wallTime: 1.25,
        step: 10,
        values: [simpleValue("train/loss", 2.5), simpleValue("train/lr", 3e-4)],
      }),
    ),
    // tensor_content, float32 (TF2's tf.summary.scalar).
    ...record(
      event({
        wallTime: 2,
        step: 11,
        values: [tensorValue("a", [...key(1, 0), 1, ...scalarShape, ...len(4, f32(1.5))])],
      }),
    ),
    // tensor_content, float64.
    ...record(
      event({
        wallTime: 3,
        step: 12,
        values: [tensorValue("b", [...key(1, 0), 2, ...scalarShape, ...len(4, f64(0.1))])],
      }),
    ),
    // float_val packed (PyTorch's new-style scalars).
    ...record(
      event({
        step: 13,
        values: [tensorValue("c", [...key(1, 0), 1, ...scalarShape, ...len(5, f32(-4.25))])],
      }),
    ),
    // float_val unpacked, no shape field at all (rank 0 by default).
    ...record(event({ step: 14, values: [tensorValue("d", [...key(1, 0), 1, ...key(5, 5), ...f32(7)])] })),
    // double_val packed and unpacked.
    ...record(event({ step: 15, values: [tensorValue("e", [...key(1, 0), 2, ...len(6, f64(1 / 3))])] })),
    ...record(
      event({ step: 16, values: [tensorValue("f", [...key(1, 0), 2, ...key(6, 1), ...f64(Math.PI)])] }),
    ),
    // Shape [1, 1] still holds one element.
    ...record(
      event({
        step: 17,
        values: [
          tensorValue("g", [
            ...key(1, 0),
            1,
            ...len(2, [...len(2, [...key(1, 0), 1]), ...len(2, [...key(1, 0), 1])]),
            ...len(5, f32(9)),
          ]),
        ],
      }),
    ),
  ]);
  const tb = parseTensorboardEvents(bytes, "mem");
  assert.equal(tb.ignoredTailBytes, 0);
  assert.equal(tb.records, 9);
  assert.equal(tb.events[0]!.fileVersion, "brain.Event:2");
  assert.equal(tb.events[0]!.wallTime, 1700000000.5);
  assert.deepEqual(
    tensorboardScalars(tb).map((s) => [s.step, s.tag, s.value]),
    [
      [10, "train/loss", 2.5],
      [10, "train/lr", Math.fround(3e-4)],
      [11, "a", 1.5],
      [12, "b", 0.1],
      [13, "c", -4.25],
      [14, "d", 7],
      [15, "e", 1 / 3],
      [16, "f", Math.PI],
      [17, "g", 9],
    ],
  );
  assert.equal(tensorboardScalars(tb)[0]!.wallTime, 1.25);
});

test("skips non-scalar tensors, strings, other event kinds and unknown fields", () => {
  const bytes = Uint8Array.from([
    // A [2]-shaped float tensor is not a scalar.
    ...record(
      event({
        step: 1,
        values: [
          tensorValue("vec", [
            ...key(1, 0),
            1,
            ...len(2, len(2, [...key(1, 0), 2])),
            ...len(5, [...f32(1), ...f32(2)]),
          ]),
        ],
      }),
    ),
    // DT_STRING (7) text summary.
    ...record(
      event({
        step: 2,
        values: [tensorValue("text", [...key(1, 0), 7, ...scalarShape, ...len(8, utf8("hello"))])],
      }),
    ),
    // A graph_def (field 4) event and a log_message (field 6).
    ...record(event({ step: 3, extra: len(4, [1, 2, 3, 4, 5]) })),
    ...record(event({ step: 4, extra: len(6, [...key(1, 0), 2, ...len(2, utf8("msg"))]) })),
    // Value with node_name (7) and metadata (9) around a simple_value; an unknown Event field 99 (fixed32).
    ...record(
      event({
        step: 5,
        extra: [...key(99, 5), 1, 2, 3, 4],
        values: [
          [
            ...len(7, utf8("node")),
            ...len(9, [...len(1, [...len(1, utf8("scalars"))])]),
            ...simpleValue("loss", 1.75),
          ],
        ],
      }),
    ),
  ]);
  const tb = parseTensorboardEvents(bytes);
  assert.equal(tb.records, 5);
  assert.deepEqual(
    tensorboardScalars(tb).map((s) => [s.step, s.tag, s.value]),
    [[5, "loss", 1.75]],
  );
});

test("decodes int64 steps beyond 32 bits and negative steps", () => {
  const bytes = Uint8Array.from([
    ...record(event({ step: 2n ** 40n + 3n, values: [simpleValue("x", 1)] })),
    ...record(event({ step: -2, values: [simpleValue("x", 2)] })),
    ...record(event({ values: [simpleValue("x", 3)] })), // step absent: proto3 default 0
  ]);
  assert.deepEqual(
    tensorboardScalars(parseTensorboardEvents(bytes)).map((s) => s.step),
    [2 ** 40 + 3, -2, 0],
  );
});

test("records session-log starts (restarts) for purging orphaned data", () => {
  const bytes = Uint8Array.from([...record(event({ step: 100, extra: len(7, [...key(1, 0), 1]) }))]);
  assert.equal(parseTensorboardEvents(bytes).events[0]!.sessionLog, "start");
});

test("writer output is byte-identical to the independent encoding, and its CRCs verify", async () => {
  await withTmp(async (dir) => {
    const scalars: TensorboardScalar[] = [
      { step: 0, wallTime: 1700000000.5, tag: "train/loss", value: 10.25 },
      { step: 1, wallTime: 1700000001.75, tag: "train/loss", value: 9.5 },
      { step: 2 ** 33, wallTime: 1700000002, tag: "eval/loss", value: 3.125 },
    ];
    const path = join(dir, "events.out.tfevents.1.host");
    await writeTensorboardScalars(path, scalars);
    const bytes = new Uint8Array(await readFile(path));
    const expected = [
      ...fileVersion,
      ...scalars.flatMap((s) =>
        record(event({ wallTime: s.wallTime, step: BigInt(s.step), values: [simpleValue(s.tag, s.value)] })),
      ),
    ];
    assert.deepEqual([...bytes], expected);

    // Walk the frames with the bitwise CRC, independently of the reader.
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    let p = 0;
    let n = 0;
    while (p < bytes.length) {
      const l = dv.getUint32(p, true);
      assert.equal(dv.getUint32(p + 4, true), 0);
      assert.equal(dv.getUint32(p + 8, true), mask(bitwiseCrc32c(bytes.subarray(p, p + 8))));
      assert.equal(dv.getUint32(p + 12 + l, true), mask(bitwiseCrc32c(bytes.subarray(p + 12, p + 12 + l))));
      p += 16 + l;
      n++;
    }
    assert.equal(n, 4);
  });
});

test("round trip through the writer, including append and refusal to overwrite", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "events.out.tfevents.2.host");
    const first = Array.from({ length: 50 }, (_, i) => ({
      step: i,
      wallTime: 1e9 + i,
      tag: "train/loss",
      value: 5 / (i + 1),
    }));
    await writeTensorboardScalars(path, first);
    await assert.rejects(writeTensorboardScalars(path, first), (e) => isPmaError(e, "EXISTS"));
    const more = [{ step: 50, wallTime: 1e9 + 50, tag: "train/grad_norm", value: Number.NaN }];
    await writeTensorboardScalars(path, more, { mode: "append" });
    const tb = await readTensorboardFile(path);
    const got = tensorboardScalars(tb);
    assert.equal(got.length, 51);
    first.forEach((s, i) => assert.deepEqual(got[i], { ...s, value: Math.fround(s.value) }));
    assert.ok(Number.isNaN(got[50]!.value));
    assert.equal(tb.events.filter((e) => e.fileVersion !== undefined).length, 1);
  });
});

test("appending after a crash that cut a record short drops the partial record first", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "events.out.tfevents.6.host");
    await writeTensorboardScalars(path, [{ step: 1, wallTime: 1, tag: "loss", value: 3 }]);
    const whole = new Uint8Array(await readFile(path));
    const partial = record(event({ step: 2, values: [simpleValue("loss", 2.5)] })).slice(0, 20);
    await writeFile(path, Uint8Array.from([...whole, ...partial]));
    assert.equal((await readTensorboardFile(path)).ignoredTailBytes, partial.length);
    await writeTensorboardScalars(path, [{ step: 2, wallTime: 2, tag: "loss", value: 2 }], {
      mode: "append",
    });
    const tb = await readTensorboardFile(path);
    assert.equal(tb.ignoredTailBytes, 0);
    assert.deepEqual(
      tensorboardScalars(tb).map((x) => [x.step, x.value]),
      [
        [1, 3],
        [2, 2],
      ],
    );
  });
});

test("a corrupt data CRC or length CRC fails with the file name and byte offset", async () => {
  await withTmp(async (dir) => {
    const rec1 = record(event({ step: 1, values: [simpleValue("loss", 1)] }));
    const rec2 = record(event({ step: 2, values: [simpleValue("loss", 2)] }));
    const good = [...fileVersion, ...rec1, ...rec2];
    const at = fileVersion.length + rec1.length; // offset of rec2
    const path = join(dir, "events.out.tfevents.3.host");

    const badData = Uint8Array.from(good);
    badData[at + rec2.length - 5]! ^= 0x01; // the float inside rec2's payload: still a valid protobuf
    await writeFile(path, badData);
    await assert.rejects(readTensorboardFile(path), (e) => {
      assert.ok(isPmaError(e, "LOG_INVALID"));
      assert.match(e.message, new RegExp(`${path.replace(/[.\\/]/g, "\\$&")}.*byte ${at}\\b`));
      return true;
    });

    const badLen = Uint8Array.from(good);
    badLen[at + 9]! ^= 0x80; // rec2's length CRC
    assert.throws(
      () => parseTensorboardEvents(badLen, "x.tfevents"),
      (e) =>
        isPmaError(e, "LOG_INVALID") &&
        /x\.tfevents.*byte \d+/.test(e.message) &&
        e.message.includes(`byte ${at}`),
    );

    // A changed length whose CRC still matches the old bytes is caught by the length CRC too.
    const badLen2 = Uint8Array.from(good);
    badLen2[at]! += 1;
    assert.throws(
      () => parseTensorboardEvents(badLen2),
      (e) => isPmaError(e, "LOG_INVALID") && e.message.includes(`byte ${at}`),
    );
  });
});

test("a file cut anywhere inside its last record is read up to that record", async () => {
  await withTmp(async (dir) => {
    const rec1 = record(event({ step: 1, values: [simpleValue("loss", 1)] }));
    const rec2 = record(event({ step: 2, values: [simpleValue("loss", 2)] }));
    const whole = [...fileVersion, ...rec1, ...rec2];
    const path = join(dir, "events.out.tfevents.4.host");
    for (let cut = 1; cut < rec2.length; cut++) {
      const bytes = Uint8Array.from(whole.slice(0, whole.length - rec2.length + cut));
      const mem = parseTensorboardEvents(bytes);
      assert.equal(mem.ignoredTailBytes, cut, `cut ${cut}`);
      assert.deepEqual(
        tensorboardScalars(mem).map((s) => s.step),
        [1],
      );
      await writeFile(path, bytes);
      const disk = await readTensorboardFile(path);
      assert.equal(disk.ignoredTailBytes, cut);
      assert.deepEqual(
        tensorboardScalars(disk).map((s) => s.step),
        [1],
      );
    }
  });
});

test("a length far beyond the file is a truncated tail, not an allocation", () => {
  const head = [0, 0, 0, 0, 0, 1, 0, 0]; // 2^40 bytes, with a valid CRC
  const bytes = Uint8Array.from([
    ...fileVersion,
    ...head,
    ...u32(mask(bitwiseCrc32c(Uint8Array.from(head)))),
    1,
    2,
    3,
  ]);
  const tb = parseTensorboardEvents(bytes);
  assert.equal(tb.ignoredTailBytes, 15);
  assert.equal(tb.events.length, 1);
  const big = [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
  const bytes2 = Uint8Array.from([...big, ...u32(mask(bitwiseCrc32c(Uint8Array.from(big))))]);
  assert.equal(parseTensorboardEvents(bytes2).ignoredTailBytes, 12);
});

test("a file larger than the read chunk, with a record larger than the chunk, reads fully", async () => {
  await withTmp(async (dir) => {
    const parts: ArrayLike<number>[] = [fileVersion];
    const n = 30000; // about 1.1 MB of small records: crosses the 1 MiB chunk boundary
    for (let i = 0; i < n; i++)
      parts.push(record(event({ wallTime: i, step: i, values: [simpleValue("loss", i / 8)] })));
    // A 1.5 MB graph_def (Event field 4) record, larger than a chunk; its content is skipped.
    const graphLen = 1_500_000;
    const head = [...key(2, 0), ...varint(n), ...key(4, 2), ...varint(graphLen)];
    const graphEvent = new Uint8Array(head.length + graphLen).fill(7);
    graphEvent.set(head);
    parts.push(recordBytes(graphEvent));
    parts.push(record(event({ step: n + 1, values: [simpleValue("loss", -1)] })));
    const total = parts.reduce((s, p) => s + p.length, 0);
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
    const path = join(dir, "events.out.tfevents.5.host");
    await writeFile(path, bytes);
    const tb = await readTensorboardFile(path);
    assert.equal(tb.records, n + 3);
    const s = tensorboardScalars(tb);
    assert.equal(s.length, n + 1);
    assert.equal(s[12345]!.value, 12345 / 8);
    assert.equal(s[n]!.step, n + 1);
  });
});

test("a record whose CRCs match but whose payload is not an Event fails with its offset", () => {
  const bytes = Uint8Array.from([...fileVersion, ...record([...key(5, 2), 50, 1])]);
  assert.throws(
    () => parseTensorboardEvents(bytes, "f"),
    (e) => isPmaError(e, "LOG_INVALID") && e.message.includes(`byte ${fileVersion.length}`),
  );
});
