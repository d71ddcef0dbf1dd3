/**
 * Writes TensorBoard event files the way PyTorch's SummaryWriter does: a file-version
 * event, then one `simple_value` scalar per event, each framed as a TFRecord
 * (tensorboard.ts reads them and describes the framing).
 */
import { open, truncate } from "node:fs/promises";
import { hostname } from "node:os";
import { writeFileAtomic } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { exists } from "../common/exists.js";
import { maskedCrc32c } from "./crc32c.js";
import { ProtoWriter, varintSize, WIRE_LEN, WIRE_VARINT } from "./protowire.js";
import { FOOTER_BYTES, HEADER_BYTES, scanFile, type TensorboardScalar } from "./tensorboard.js";

function putU32le(out: Uint8Array, at: number, v: number): void {
  out[at] = v & 0xff;
  out[at + 1] = (v >>> 8) & 0xff;
  out[at + 2] = (v >>> 16) & 0xff;
  out[at + 3] = v >>> 24;
}

/**
 * Frames one record into `out` at `at` (16 + data.length bytes): length, masked CRC of
 * the length, data, masked CRC of the data.
 */
function frameInto(out: Uint8Array, at: number, data: Uint8Array): void {
  putU32le(out, at, data.length >>> 0);
  putU32le(out, at + 4, Math.floor(data.length / 2 ** 32));
  putU32le(out, at + 8, maskedCrc32c(out.subarray(at, at + 8)));
  out.set(data, at + HEADER_BYTES);
  putU32le(out, at + HEADER_BYTES + data.length, maskedCrc32c(data));
}

/** Framed records appended into one growing buffer (no per-record allocation). */
class RecordSink {
  private buf = new Uint8Array(4096);
  private len = 0;

  add(data: Uint8Array): void {
    const need = this.len + HEADER_BYTES + data.length + FOOTER_BYTES;
    if (need > this.buf.length) {
      const next = new Uint8Array(Math.max(need, this.buf.length * 2));
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
    frameInto(this.buf, this.len, data);
    this.len = need;
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

export const TENSORBOARD_FILE_VERSION = "brain.Event:2";

const UTF8 = new TextEncoder();

function versionEvent(w: ProtoWriter, wallTime: number): Uint8Array {
  return w.reset().double(1, wallTime).string(3, TENSORBOARD_FILE_VERSION).view();
}

/** Event{wall_time, step, summary{value{tag, simple_value}}}, nested lengths computed up front. */
function scalarEvent(w: ProtoWriter, s: TensorboardScalar, tags: Map<string, Uint8Array>): Uint8Array {
  let tag = tags.get(s.tag);
  if (tag === undefined) {
    tag = UTF8.encode(s.tag);
    tags.set(s.tag, tag);
  }
  const valueLen = 1 + varintSize(tag.length) + tag.length + 5;
  const summaryLen = 1 + varintSize(valueLen) + valueLen;
  return w
    .reset()
    .double(1, s.wallTime)
    .key(2, WIRE_VARINT)
    .varint(s.step)
    .key(5, WIRE_LEN)
    .varint(summaryLen)
    .key(1, WIRE_LEN)
    .varint(valueLen)
    .bytes(1, tag)
    .float(2, s.value)
    .view();
}

function checkScalar(s: TensorboardScalar, i: number): void {
  if (!Number.isSafeInteger(s.step))
    throw new PmaError("LOG_INVALID", `scalar ${i} (${s.tag}): step ${s.step} is not an integer.`);
  if (!Number.isFinite(s.wallTime))
    throw new PmaError("LOG_INVALID", `scalar ${i} (${s.tag}): wall time ${s.wallTime} is not finite.`);
}

/**
 * The bytes of an event file (or, with `header: false`, of records to append to one):
 * a file-version event, then one event per scalar. Values are stored as float32
 * `simple_value`, which is what TensorBoard itself and PyTorch write.
 */
export function encodeTensorboardScalars(
  scalars: readonly TensorboardScalar[],
  options: { header?: boolean; wallTime?: number } = {},
): Uint8Array {
  const w = new ProtoWriter();
  const sink = new RecordSink();
  if (options.header ?? true) {
    sink.add(versionEvent(w, options.wallTime ?? scalars[0]?.wallTime ?? Date.now() / 1000));
  }
  const tags = new Map<string, Uint8Array>();
  scalars.forEach((s, i) => {
    checkScalar(s, i);
    sink.add(scalarEvent(w, s, tags));
  });
  return sink.bytes();
}

/** The conventional event file name: `events.out.tfevents.<unix seconds>.<host>`. */
export function tensorboardFileName(wallTime = Date.now() / 1000, host = hostname()): string {
  return `events.out.tfevents.${Math.floor(wallTime)}.${host}`;
}

export interface WriteTensorboardOptions {
  /**
   * "create" (default) refuses to replace an existing file; "overwrite" replaces it
   * atomically; "append" adds records to an existing file (or creates it), which is how a
   * trainer logs as it goes: a reader tolerates a record cut short by a crash, and the
   * next append cuts such a record off first. Append checks the file's framing each time
   * (reading it at disk speed), and must not be used on a file another process writes.
   */
  mode?: "create" | "overwrite" | "append";
}

/** Writes scalars as a TensorBoard event file. */
export async function writeTensorboardScalars(
  path: string,
  scalars: readonly TensorboardScalar[],
  options: WriteTensorboardOptions = {},
): Promise<void> {
  const mode = options.mode ?? "create";
  if (mode === "append" && (await exists(path))) {
    const bytes = encodeTensorboardScalars(scalars, { header: false });
    // A crash may have left a partial record; appending after it would turn a tolerated
    // tail into corruption in the middle, so cut it off first (framing and CRCs only).
    const { size, ignoredTailBytes } = await scanFile(path, () => undefined);
    if (ignoredTailBytes > 0) await truncate(path, size - ignoredTailBytes);
    const fh = await open(path, "a");
    try {
      await fh.write(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    return;
  }
  if (mode === "create" && (await exists(path))) {
    throw new PmaError(
      "EXISTS",
      `${path} already exists; pass mode "overwrite" or "append" to replace or extend it.`,
      { file: path },
    );
  }
  // Atomic publish: a reader never sees a half-written new file under the final name.
  await writeFileAtomic(path, encodeTensorboardScalars(scalars));
}
