import { mkdir } from "node:fs/promises";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { maskedCrc32c } from "../../src/formats/crc32c.js";
import { ProtoWriter, WIRE_LEN } from "../../src/formats/protowire.js";
import { type TensorboardScalar } from "../../src/formats/tensorboard.js";
import { encodeTensorboardScalars } from "../../src/formats/tensorboard-writer.js";
import { readTensorboardLog } from "../../src/trajectory/log-readers.js";
import { detectSpikes } from "../../src/trajectory/spikes.js";
import type { FuzzTarget } from "../target.js";

const TAGS = [
  "train/loss",
  "train/grad_norm",
  "train/learning_rate",
  "eval/loss",
  "train/num_input_tokens_seen",
];
/** Loss tags of Keras, Megatron-LM, NeMo, torchtitan and OLMo (docs/logs.md). */
const OTHER_LOGGER_TAGS = [
  "batch_loss",
  "epoch_loss",
  "evaluation_loss_vs_iterations",
  "lm loss",
  "lm loss validation",
  "reduced_train_loss",
  "loss_metrics/global_avg_loss",
  "train/CE loss",
];

function scalars(n: number, restartAt: number | null): TensorboardScalar[] {
  const out: TensorboardScalar[] = [];
  for (let step = 1; step <= n; step++) {
    const s = restartAt !== null && step > n / 2 ? step - restartAt : step;
    for (const tag of TAGS)
      out.push({
        step: s,
        wallTime: 1.7e9 + step,
        tag,
        value: tag === "train/loss" ? (step === 7 ? 40 : 3 / Math.sqrt(step)) : step * 0.01,
      });
  }
  return out;
}

/**
 * Events the writer does not produce but TF2 / newer PyTorch do: a scalar as a
 * one-element float TensorProto, a SessionLog START, a double tensor with a shape.
 * Encoded with pma's own protobuf writer.
 */
function extraEvents(): Uint8Array[] {
  const w = new ProtoWriter();
  const tensorScalar = new ProtoWriter()
    .uint(1, 1)
    .bytes(4, new Uint8Array(Float32Array.of(2.5).buffer))
    .finish();
  const value = new ProtoWriter().string(1, "train/loss").bytes(8, tensorScalar).finish();
  const summary = new ProtoWriter().bytes(1, value).finish();
  const shape = new ProtoWriter().bytes(2, new ProtoWriter().uint(1, 1).finish()).finish();
  const dtensor = new ProtoWriter()
    .uint(1, 2)
    .bytes(2, shape)
    .bytes(6, new Uint8Array(Float64Array.of(1.25).buffer))
    .finish();
  const dvalue = new ProtoWriter().string(1, "eval/loss").bytes(8, dtensor).finish();
  return [
    w.reset().double(1, 1.7e9).uint(2, 3).bytes(5, summary).finish(),
    w.reset().double(1, 1.7e9).uint(2, 2).key(7, WIRE_LEN).varint(2).uint(1, 1).finish(),
    w.reset().double(1, 1.7e9).uint(2, 4).bytes(5, new ProtoWriter().bytes(1, dvalue).finish()).finish(),
  ];
}

/** u64 length, masked CRC of the length, data, masked CRC of the data. */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = Buffer.alloc(16 + data.length);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return out;
}

/** Record payloads of a well-framed event file (the seeds are). */
function unframe(file: Uint8Array): Uint8Array[] {
  const b = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const out: Uint8Array[] = [];
  for (let p = 0; p + 12 <= b.length;) {
    const n = Number(b.readBigUInt64LE(p));
    out.push(b.subarray(p + 12, p + 12 + n));
    p += 16 + n;
  }
  return out;
}

function seedFiles(): Uint8Array[] {
  const plain = encodeTensorboardScalars(scalars(12, null), { wallTime: 1.7e9 });
  const restarted = encodeTensorboardScalars(scalars(10, 3), { wallTime: 1.7e9 });
  const extra = Buffer.concat([
    encodeTensorboardScalars([], { wallTime: 1.7e9 }),
    ...extraEvents().map(frameRecord),
  ]);
  return [plain, restarted, extra];
}

async function reader(work: string, name: string): Promise<(bytes: Uint8Array) => Promise<void>> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  const file = join(dir, "events.out.tfevents.1700000000.host");
  return async (bytes) => {
    await writeFile(file, bytes);
    detectSpikes(await readTensorboardLog([file]));
  };
}

export const tensorboardFile: FuzzTarget = {
  name: "tensorboard",
  description:
    "an events.out.tfevents file as bytes: record framing and CRCs, Event protobufs, scalars -> training log -> spike detection",
  dictionary: [...TAGS, ...OTHER_LOGGER_TAGS, "brain.Event:2"],
  async seeds() {
    return seedFiles();
  },
  setup: (work) => reader(work, "tb"),
};

/**
 * Records framed by the harness, so mutations reach the protobuf decoder instead of
 * failing the CRC: input = [u16 LE length][payload] repeated; a short tail is one more
 * payload, framed as it is.
 */
export const tensorboardEvents: FuzzTarget = {
  name: "tensorboard-events",
  description:
    "Event protobufs with valid framing and CRCs: wire types, varints, nested summaries, tensor scalars, session logs",
  dictionary: [...TAGS, ...OTHER_LOGGER_TAGS, "brain.Event:2"],
  async seeds() {
    return seedFiles().map((f) => {
      const parts = unframe(f).flatMap((p) => {
        const len = Buffer.alloc(2);
        len.writeUInt16LE(p.length);
        return [len, p];
      });
      return Buffer.concat(parts);
    });
  },
  async setup(work) {
    const read = await reader(work, "tbe");
    return async (data) => {
      const records: Uint8Array[] = [];
      let p = 0;
      while (p < data.length) {
        const n = p + 2 <= data.length ? data[p]! | (data[p + 1]! << 8) : 0;
        const start = Math.min(p + 2, data.length);
        const end = Math.min(start + n, data.length);
        records.push(frameRecord(data.subarray(start, end)));
        p = end === start && n === 0 ? start + (start === p ? 1 : 0) : end;
      }
      await read(Buffer.concat(records));
    };
  },
};
