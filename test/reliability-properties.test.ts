/**
 * Property-based checks (fast-check) of the reader rules the fuzzer cannot judge by
 * itself, each against an independent model:
 *   - an accepted safetensors header describes exactly the file: tensors tile the data
 *     buffer, and each size is the shape's product times the dtype's bits, computed in
 *     BigInt (no float rounding); anything else is a PmaError;
 *   - the JSON shape pre-check measures what JSON.parse would build;
 *   - the log builder (one point per step, restarts drop the abandoned tail) matches a
 *     plain re-implementation of its rules;
 *   - a TensorBoard file cut anywhere (a live file, a crash) reads the complete records
 *     that the framing says come before the cut, and nothing else.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { isPmaError } from "../src/common/errors.js";
import { checkJsonShape } from "../src/formats/json-shape.js";
import { parseSafetensorsHeader } from "../src/formats/safetensors-header.js";
import { dtypeBits, type DType } from "../src/tensor/dtype.js";
import { parseTensorboardEvents } from "../src/formats/tensorboard.js";
import { encodeTensorboardScalars } from "../src/formats/tensorboard-writer.js";
import { parsePmaJsonl, type LogPoint } from "../src/trajectory/logs.js";

const RUNS = { numRuns: 400, seed: 20240601 };
const DTYPES: DType[] = ["F64", "F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "F4", "F6_E2M3"];

const dim = fc.oneof(fc.nat(5), fc.constantFrom(0, 1, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 3037000500));
const entry = fc.record({
  name: fc.string({ maxLength: 6 }),
  dtype: fc.oneof(fc.constantFrom(...DTYPES), fc.constant("Q4" as DType)),
  shape: fc.array(dim, { maxLength: 4 }),
  // Sizes are derived from the shape most of the time, so that valid headers occur.
  lie: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: -3, max: 3 })),
});

function trueBytes(dtype: DType, shape: number[]): bigint {
  if (!DTYPES.includes(dtype)) return 0n;
  return (shape.reduce((a, d) => a * BigInt(d), 1n) * BigInt(dtypeBits(dtype))) / 8n;
}

describe("properties", () => {
  test("safetensors: an accepted header tiles the file with exactly sized tensors", () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 5 }), fc.nat(8), fc.boolean(), (entries, slack, shuffle) => {
        let offset = 0n;
        const header: Record<string, unknown> = {};
        for (const e of entries) {
          const size = trueBytes(e.dtype, e.shape) + BigInt(e.lie);
          header[e.name] = {
            dtype: e.dtype,
            shape: e.shape,
            data_offsets: [Number(offset), Number(offset + size)],
          };
          offset += size > 0n ? size : 0n;
        }
        const keys = Object.keys(header);
        if (shuffle) keys.reverse();
        const json = Buffer.from(JSON.stringify(Object.fromEntries(keys.map((k) => [k, header[k]]))));
        const dataLength = Number(offset) + (slack === 1 ? 1 : 0);
        let parsed;
        try {
          parsed = parseSafetensorsHeader(json, 8 + json.length + dataLength, "p.safetensors");
        } catch (e) {
          assert.ok(isPmaError(e), String(e));
          return;
        }
        let expected = 0;
        for (const t of parsed.tensors) {
          assert.equal(t.fileOffset, parsed.dataStart + expected);
          assert.equal(BigInt(t.byteLength), trueBytes(t.dtype, t.shape));
          expected += t.byteLength;
        }
        assert.equal(expected, parsed.dataLength);
        assert.equal(parsed.dataStart + parsed.dataLength, 8 + json.length + dataLength);
      }),
      RUNS,
    );
  });

  test("the JSON shape pre-check agrees with the parsed value", () => {
    const measure = (
      v: unknown,
      depth: number,
      acc: { depth: number; array: number; object: number },
    ): void => {
      if (Array.isArray(v)) {
        acc.depth = Math.max(acc.depth, depth);
        acc.array = Math.max(acc.array, v.length);
        for (const x of v) measure(x, depth + 1, acc);
      } else if (v !== null && typeof v === "object") {
        acc.depth = Math.max(acc.depth, depth);
        const values = Object.values(v);
        acc.object = Math.max(acc.object, values.length);
        for (const x of values) measure(x, depth + 1, acc);
      }
    };
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.nat(4), fc.nat(4), fc.nat(4), (value, d, a, o) => {
        const text = JSON.stringify(value);
        const acc = { depth: 0, array: 0, object: 0 };
        measure(JSON.parse(text), 1, acc);
        const limits = { maxDepth: d + 1, maxArrayElements: a + 1, maxObjectKeys: o + 1 };
        const within =
          acc.depth <= limits.maxDepth &&
          acc.array <= limits.maxArrayElements &&
          acc.object <= limits.maxObjectKeys;
        // An empty container counts one element in the pre-check (commas + 1): a limit of 1 still passes it.
        assert.equal(checkJsonShape(text, limits) === null, within, text);
      }),
      RUNS,
    );
  });

  test("the log builder keeps one point per step and drops what a restart abandons", () => {
    const record = fc.record({
      train: fc.boolean(),
      step: fc.nat(30),
      value: fc.integer({ min: 1, max: 9 }),
    });
    fc.assert(
      fc.property(fc.array(record, { maxLength: 60 }), (records) => {
        const text =
          records
            .map((r) =>
              JSON.stringify(
                r.train
                  ? { type: "step", step: r.step, loss: r.value }
                  : { type: "eval", step: r.step, val_loss: r.value },
              ),
            )
            .join("\n") + "\n";
        // The rules, written out plainly: scan all points on every restart.
        const points = new Map<number, LogPoint>();
        let lastTrain = -Infinity;
        let restarts = 0;
        for (const r of records) {
          if (r.train) {
            if (r.step < lastTrain) {
              for (const s of [...points.keys()]) if (s >= r.step) points.delete(s);
              restarts++;
            }
            lastTrain = r.step;
          }
          const p = points.get(r.step) ?? { step: r.step };
          if (r.train) p.loss = r.value;
          else p.evalLoss = r.value;
          points.set(r.step, p);
        }
        const log = parsePmaJsonl(text, "log.jsonl");
        assert.deepEqual(
          log.points,
          [...points.values()].sort((a, b) => a.step - b.step),
        );
        assert.equal(log.restarts, restarts);
      }),
      RUNS,
    );
  });

  test("TensorBoard: a file cut anywhere reads the records before the cut and reports the rest as an unfinished tail", () => {
    const scalar = fc.record({
      step: fc.nat(1_000_000),
      wallTime: fc.double({ min: 0, max: 2e9, noNaN: true }),
      tag: fc.constantFrom("train/loss", "eval/loss", "train/learning_rate"),
      value: fc.float({ noNaN: true }),
    });
    fc.assert(
      fc.property(fc.array(scalar, { minLength: 1, maxLength: 20 }), fc.nat(), (scalars, at) => {
        const bytes = encodeTensorboardScalars(scalars, { wallTime: 1 });
        // Record ends from the framing alone: 8-byte length, 4-byte CRC, data, 4-byte CRC.
        const ends: number[] = [];
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let p = 0; p < bytes.length;) ends.push((p += 16 + Number(view.getBigUint64(p, true))));
        const cut = at % (bytes.length + 1);
        const complete = ends.filter((e) => e <= cut);
        const read = parseTensorboardEvents(bytes.subarray(0, cut));
        assert.equal(read.records, complete.length);
        assert.equal(read.ignoredTailBytes, cut - (complete.at(-1) ?? 0));
        // The first record is the file-version event; then one event per scalar.
        const values = read.events.flatMap((e) => e.values.map((v) => v.value));
        assert.deepEqual(
          values,
          scalars.slice(0, Math.max(0, complete.length - 1)).map((x) => Math.fround(x.value)),
        );
      }),
      RUNS,
    );
  });
});
