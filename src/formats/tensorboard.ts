/**
 * TensorBoard event files (`events.out.tfevents.*`): TFRecord framing around serialized
 * `Event` protobufs. We read scalars (from `simple_value` and from one-element float
 * tensors, which is how TF2 and newer PyTorch writers store them); tensorboard-writer.ts
 * writes them.
 *
 * Record framing: u64 LE length, u32 masked CRC-32C of those 8 bytes, the data, u32
 * masked CRC-32C of the data. A live file can end in a partially written record: reading
 * stops there and reports how many bytes it ignored. Any CRC mismatch before the end is
 * corruption and fails with the file and byte offset.
 */
import { open } from "node:fs/promises";
import { PmaError } from "../common/errors.js";
import { maskedCrc32c } from "./crc32c.js";
import { lfsPointerError } from "./lfs-pointer.js";
import { ProtoError, ProtoReader, WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT } from "./protowire.js";

/** One scalar data point. */
export interface TensorboardScalar {
  step: number;
  /** Seconds since the Unix epoch. */
  wallTime: number;
  tag: string;
  value: number;
}

/** One decoded event that carried something we keep. */
export interface TensorboardEvent {
  /** Byte offset of the record in its file. */
  offset: number;
  step: number;
  wallTime: number;
  /** Present on the first event of a file ("brain.Event:2"). */
  fileVersion?: string;
  /** SessionLog status: a "start" marks a (re)start; data at or after its step is orphaned. */
  sessionLog?: "start" | "stop" | "checkpoint";
  values: { tag: string; value: number }[];
}

export interface TensorboardFile {
  file: string;
  /** Events in file order; events that carried nothing we read (graphs, images) are left out. */
  events: TensorboardEvent[];
  /** Records read, including the ones left out of `events`. */
  records: number;
  /** Bytes of a partial record at the end of the file (a file still being written). */
  ignoredTailBytes: number;
}

/** Record framing: u64 length + u32 CRC before the data, u32 CRC after it. */
export const HEADER_BYTES = 12;
export const FOOTER_BYTES = 4;
/** Read size: big enough for throughput, small enough that memory stays flat on huge files. */
const CHUNK_BYTES = 1 << 20;

/** Called per complete record with its file offset and the data's bounds in `buf`. */
export type OnRecord = (offset: number, buf: Uint8Array, start: number, end: number) => void;

interface Scan {
  records: number;
  /** Bytes of `buf` fully consumed by complete records. */
  consumed: number;
  /** The file ends inside the record at `consumed`. */
  truncated: boolean;
  /** When neither: bytes needed from `consumed` on to complete the next record. */
  need: number;
}

function u32le(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

/**
 * Splits `buf` (which starts at file offset `base`; the file has `left` bytes from there
 * on) into complete, CRC-checked records. Lengths are trusted only after their CRC
 * matches, and never used to allocate: a length past the end of the file means the
 * file is still being written.
 */
function scanRecords(buf: Uint8Array, base: number, left: number, file: string, onRecord: OnRecord): Scan {
  // A callback rather than a list of subarrays: a million live views is mostly GC work.
  let records = 0;
  let p = 0;
  for (;;) {
    const rest = left - p;
    if (rest === 0) return { records, consumed: p, truncated: false, need: 0 };
    if (rest < HEADER_BYTES) return { records, consumed: p, truncated: true, need: 0 };
    if (buf.length - p < HEADER_BYTES) return { records, consumed: p, truncated: false, need: HEADER_BYTES };
    const lenBytes = buf.subarray(p, p + 8);
    const lenCrc = u32le(buf, p + 8);
    if (maskedCrc32c(lenBytes) !== lenCrc) {
      throw new PmaError(
        "LOG_INVALID",
        `${file}: corrupt TensorBoard record at byte ${base + p}: the length's CRC-32C does not match. ` +
          `The file is damaged; data before this offset is readable.`,
        { file },
      );
    }
    const lo = u32le(buf, p);
    const hi = u32le(buf, p + 4);
    const total = HEADER_BYTES + FOOTER_BYTES;
    // hi > 0 means more than 4 GiB: certainly past the end of any file still being written.
    if (hi > 0 || lo > rest - total) return { records, consumed: p, truncated: true, need: 0 };
    const len = lo;
    if (buf.length - p < total + len) return { records, consumed: p, truncated: false, need: total + len };
    if (
      maskedCrc32c(buf.subarray(p + HEADER_BYTES, p + HEADER_BYTES + len)) !==
      u32le(buf, p + HEADER_BYTES + len)
    ) {
      throw new PmaError(
        "LOG_INVALID",
        `${file}: corrupt TensorBoard record at byte ${base + p}: the data's CRC-32C does not match. ` +
          `The file is damaged; data before this offset is readable.`,
        { file },
      );
    }
    onRecord(base + p, buf, p + HEADER_BYTES, p + HEADER_BYTES + len);
    records++;
    p += total + len;
  }
}

const DT_FLOAT = 1;
const DT_DOUBLE = 2;

/** The value of a one-element float32/float64 TensorProto, or null for anything else. */
function scalarTensor(r: ProtoReader): number | null {
  let dtype = 0;
  let numel = 1;
  let content: Uint8Array | null = null;
  const vals: number[] = [];
  while (!r.done()) {
    const { field, wire } = r.key();
    if (field === 1 && wire === WIRE_VARINT) dtype = r.varint();
    else if (field === 2 && wire === WIRE_LEN) numel = shapeElements(r.message());
    else if (field === 4 && wire === WIRE_LEN) content = r.bytesField();
    else if (field === 5 && wire === WIRE_LEN) {
      const m = r.message();
      while (!m.done()) vals.push(m.float());
    } else if (field === 5 && wire === WIRE_FIXED32) vals.push(r.float());
    else if (field === 6 && wire === WIRE_LEN) {
      const m = r.message();
      while (!m.done()) vals.push(m.double());
    } else if (field === 6 && wire === WIRE_FIXED64) vals.push(r.double());
    else r.skip(wire);
  }
  if (numel !== 1) return null;
  if (dtype !== DT_FLOAT && dtype !== DT_DOUBLE) return null;
  if (content !== null && content.length > 0) {
    const width = dtype === DT_FLOAT ? 4 : 8;
    if (content.length !== width) return null;
    const dv = new DataView(content.buffer, content.byteOffset, content.byteLength);
    return dtype === DT_FLOAT ? dv.getFloat32(0, true) : dv.getFloat64(0, true);
  }
  return vals.length === 1 ? vals[0]! : null;
}

/** Element count of a TensorShapeProto; -1 for unknown rank or unknown dimensions. */
function shapeElements(r: ProtoReader): number {
  let n = 1;
  while (!r.done()) {
    const { field, wire } = r.key();
    if (field === 2 && wire === WIRE_LEN) {
      const d = r.message();
      let size = 0;
      while (!d.done()) {
        const k = d.key();
        if (k.field === 1 && k.wire === WIRE_VARINT) size = d.int64();
        else d.skip(k.wire);
      }
      n = size < 0 ? -1 : n < 0 ? -1 : n * size;
    } else if (field === 3 && wire === WIRE_VARINT) {
      if (r.varint() !== 0) n = -1;
    } else r.skip(wire);
  }
  return n;
}

function summaryValues(r: ProtoReader, out: { tag: string; value: number }[]): void {
  while (!r.done()) {
    const { field, wire } = r.key();
    if (field !== 1 || wire !== WIRE_LEN) {
      r.skip(wire);
      continue;
    }
    const v = r.message();
    let tag = "";
    let value: number | null = null;
    while (!v.done()) {
      const k = v.key();
      if (k.field === 1 && k.wire === WIRE_LEN) tag = v.string();
      else if (k.field === 2 && k.wire === WIRE_FIXED32) value = v.float();
      else if (k.field === 8 && k.wire === WIRE_LEN) value = scalarTensor(v.message());
      else v.skip(k.wire);
    }
    if (value !== null) out.push({ tag, value });
  }
}

const SESSION_STATUS = { 1: "start", 2: "stop", 3: "checkpoint" } as const;

function decodeEvent(
  buf: Uint8Array,
  start: number,
  end: number,
  offset: number,
  view: DataView,
): TensorboardEvent {
  // Positions in ProtoErrors become file offsets: the data starts 12 bytes into the record.
  const r = new ProtoReader(buf, start, end, offset + HEADER_BYTES - start, view);
  const ev: TensorboardEvent = { offset, step: 0, wallTime: 0, values: [] };
  while (!r.done()) {
    const { field, wire } = r.key();
    if (field === 1 && wire === WIRE_FIXED64) ev.wallTime = r.double();
    else if (field === 2 && wire === WIRE_VARINT) ev.step = r.int64();
    else if (field === 3 && wire === WIRE_LEN) ev.fileVersion = r.string();
    else if (field === 5 && wire === WIRE_LEN) summaryValues(r.message(), ev.values);
    else if (field === 7 && wire === WIRE_LEN) {
      const s = r.message();
      while (!s.done()) {
        const k = s.key();
        if (k.field === 1 && k.wire === WIRE_VARINT) {
          const status = s.varint();
          if (status === 1 || status === 2 || status === 3) ev.sessionLog = SESSION_STATUS[status];
        } else s.skip(k.wire);
      }
    } else r.skip(wire);
  }
  return ev;
}

function keep(ev: TensorboardEvent): boolean {
  return ev.values.length > 0 || ev.fileVersion !== undefined || ev.sessionLog !== undefined;
}

/** A record handler that decodes events into `out`, with a view reused per buffer. */
function eventCollector(file: string, out: TensorboardEvent[]): OnRecord {
  let viewOf: Uint8Array | null = null;
  let view: DataView | null = null;
  return (offset, buf, start, end) => {
    if (viewOf !== buf || view === null) {
      viewOf = buf;
      view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    let ev: TensorboardEvent;
    try {
      ev = decodeEvent(buf, start, end, offset, view);
    } catch (e) {
      if (!(e instanceof ProtoError)) throw e;
      // The CRC matched, so these bytes are what the writer wrote: not an Event.
      throw new PmaError(
        "LOG_INVALID",
        `${file}: record at byte ${offset} is not a valid Event protobuf (${e.message} at byte ${e.position}).`,
        { file },
      );
    }
    if (keep(ev)) out.push(ev);
  };
}

/** Decodes an event file already in memory. */
export function parseTensorboardEvents(bytes: Uint8Array, file = "<memory>"): TensorboardFile {
  const events: TensorboardEvent[] = [];
  const scan = scanRecords(bytes, 0, bytes.length, file, eventCollector(file, events));
  return {
    file,
    events,
    records: scan.records,
    ignoredTailBytes: scan.truncated ? bytes.length - scan.consumed : 0,
  };
}

/**
 * Walks the records of an event file in chunks, so memory stays bounded by the largest
 * record rather than the file size. The size is taken when the file is opened: bytes a
 * live writer appends afterwards are left for the next read.
 */
export async function scanFile(
  path: string,
  onRecord: OnRecord,
): Promise<{ records: number; size: number; ignoredTailBytes: number }> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch (e) {
    throw new PmaError("IO", `${path}: cannot open TensorBoard event file (${(e as Error).message}).`, {
      file: path,
      cause: e,
    });
  }
  try {
    const size = (await fh.stat()).size;
    if (size <= 1024) {
      const head = new Uint8Array(size);
      await fh.read(head, 0, size, 0);
      const lfs = lfsPointerError(path, head, size);
      if (lfs !== null) throw lfs;
    }
    let records = 0;
    let base = 0;
    let buf: Uint8Array = new Uint8Array(0);
    for (;;) {
      const scan = scanRecords(buf, base, size - base, path, onRecord);
      records += scan.records;
      base += scan.consumed;
      if (scan.truncated) return { records, size, ignoredTailBytes: size - base };
      if (base === size) return { records, size, ignoredTailBytes: 0 };
      const leftover = buf.subarray(scan.consumed);
      // `need` was checked against the file size by scanRecords, so this is bounded.
      const want = Math.min(size - base, Math.max(CHUNK_BYTES, scan.need));
      const next = new Uint8Array(want);
      next.set(leftover);
      let filled = leftover.length;
      while (filled < want) {
        const { bytesRead } = await fh.read(next, filled, want - filled, base + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      // The file shrank while we read it: what is missing is an unwritten tail.
      if (filled < want) return { records, size: base + filled, ignoredTailBytes: filled };
      buf = next;
    }
  } finally {
    await fh.close();
  }
}

/** Reads and decodes an event file. */
export async function readTensorboardFile(path: string): Promise<TensorboardFile> {
  const events: TensorboardEvent[] = [];
  const { records, ignoredTailBytes } = await scanFile(path, eventCollector(path, events));
  return { file: path, events, records, ignoredTailBytes };
}

/** All scalars of a decoded file, in file order. */
export function tensorboardScalars(tb: TensorboardFile): TensorboardScalar[] {
  const out: TensorboardScalar[] = [];
  for (const ev of tb.events) {
    for (const v of ev.values) out.push({ step: ev.step, wallTime: ev.wallTime, tag: v.tag, value: v.value });
  }
  return out;
}
