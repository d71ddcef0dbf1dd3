/**
 * The records of one DCP segment: a torch.save zip stored inside a `.distcp` file at the
 * byte range `.metadata` gives. Only what DCP needs is read, from the slice alone (its
 * offsets count from the slice's start, since torch.save wrote it to a buffer): each
 * record's name, where its stored bytes lie, and where its CRC-32 fields are (so a writer
 * that replaces a chunk's bytes can keep the zip valid). Every size and offset is
 * checked against the slice, records must be stored (uncompressed) and must not overlap:
 * a hostile segment can neither reach outside its slice nor make one record two.
 */
import * as fs from "node:fs";
import { PmaError } from "../../common/errors.js";
import { readFullySync } from "../../common/positional-io.js";

export interface SegmentRecord {
  /** The name inside the zip, e.g. `archive/data/0`. */
  name: string;
  /** Absolute position of the stored bytes in the `.distcp` file. */
  dataOffset: number;
  length: number;
  crc32: number;
  /** Absolute positions of the CRC-32 fields that describe this record. */
  crcFields: number[];
}

const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_LOCATOR64 = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const SIG_DESCRIPTOR = 0x08074b50;
const MAX_RECORDS = 4096;
/** A segment's central directory holds a handful of names; more means it is not one. */
const MAX_CENTRAL_DIRECTORY = 1 << 20;

/**
 * Reads the records of the zip stored at [offset, offset + length) of `file` (opened as `fd`).
 * `item` names the DCP item for messages.
 */
export function readSegmentRecords(
  fd: number,
  file: string,
  offset: number,
  length: number,
  item: string,
): SegmentRecord[] {
  const bad = (what: string): never => {
    throw new PmaError(
      "METADATA_INVALID",
      `${file}: the item "${item}" at bytes [${offset}, ${offset + length}) is not a valid torch.save zip: ${what}.`,
      { file },
    );
  };
  const read = (pos: number, n: number): Buffer => {
    if (pos < 0 || n < 0 || pos + n > length) bad(`a structure at ${pos} (+${n}) lies outside the item`);
    const b = Buffer.alloc(n);
    readFullySync(fd, file, b, offset + pos);
    return b;
  };
  if (length < 22) bad("it is shorter than a zip's end record");
  // torch writes no archive comment, so the end record is the last 22 bytes; allow a
  // comment (up to 64 KiB) only when it is not.
  let eocd = -1;
  for (const tailLen of [22, Math.min(length, 65535 + 22)]) {
    const tail = read(length - tailLen, tailLen);
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === SIG_EOCD && i + 22 + tail.readUInt16LE(i + 20) === tailLen) {
        eocd = length - tailLen + i;
        break;
      }
    }
    if (eocd >= 0) break;
  }
  if (eocd < 0) bad("it has no end-of-central-directory record");
  const e = read(eocd, 22);
  let entries = e.readUInt16LE(10);
  let cdSize = e.readUInt32LE(12);
  let cdOffset = e.readUInt32LE(16);
  if (
    entries === 0xffff ||
    cdSize === 0xffffffff ||
    cdOffset === 0xffffffff ||
    (eocd >= 20 && read(eocd - 20, 4).readUInt32LE(0) === SIG_LOCATOR64)
  ) {
    if (eocd < 20) bad("its ZIP64 locator is missing");
    const loc = read(eocd - 20, 20);
    if (loc.readUInt32LE(0) !== SIG_LOCATOR64) bad("its ZIP64 locator is missing");
    const e64At = Number(loc.readBigUInt64LE(8));
    const e64 = read(e64At, 56);
    if (e64.readUInt32LE(0) !== SIG_EOCD64) bad("its ZIP64 end record is missing");
    const n64 = e64.readBigUInt64LE(32);
    const size64 = e64.readBigUInt64LE(40);
    const off64 = e64.readBigUInt64LE(48);
    if (n64 > BigInt(MAX_RECORDS) || size64 > BigInt(length) || off64 > BigInt(length))
      bad("its ZIP64 end record gives sizes beyond the item");
    entries = Number(n64);
    cdSize = Number(size64);
    cdOffset = Number(off64);
  }
  if (entries > MAX_RECORDS) bad(`it claims ${entries} records`);
  if (cdSize > MAX_CENTRAL_DIRECTORY) bad(`its central directory claims ${cdSize} bytes`);
  const cd = read(cdOffset, cdSize);
  const records: SegmentRecord[] = [];
  let p = 0;
  for (let k = 0; k < entries; k++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL)
      bad(`central directory entry ${k} is malformed`);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc32 = cd.readUInt32LE(p + 16);
    let comp = cd.readUInt32LE(p + 20);
    let uncomp = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let local = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length)
      bad(`central directory entry ${k} runs past the directory`);
    const name = cd.toString("utf8", p + 46, p + 46 + nameLen);
    // ZIP64 extended information: 8-byte values for the fields saturated at 0xffffffff, in this order.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = cd.readUInt16LE(x);
      const size = cd.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let q = x + 4;
        const take = (): number => {
          if (q + 8 > x + 4 + size) bad(`the ZIP64 field of "${name}" is too short`);
          const v = cd.readBigUInt64LE(q);
          q += 8;
          if (v > BigInt(length))
            bad(`record "${name}" claims a size or offset of ${v} bytes, beyond the item`);
          return Number(v);
        };
        if (uncomp === 0xffffffff) uncomp = take();
        if (comp === 0xffffffff) comp = take();
        if (local === 0xffffffff) local = take();
      }
      x += 4 + size;
    }
    if (method !== 0) {
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${file}: record "${name}" of item "${item}" is compressed (zip method ${method}); torch writes stored records, and pma reads only those. Re-save the checkpoint with torch.distributed.checkpoint.`,
        { file },
      );
    }
    if (comp !== uncomp) bad(`stored record "${name}" has different compressed and uncompressed sizes`);
    const lh = read(local, 30);
    if (lh.readUInt32LE(0) !== SIG_LOCAL) bad(`record "${name}" has no local header at ${local}`);
    const dataAt = local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
    if (dataAt + comp > cdOffset) bad(`record "${name}" runs into the central directory`);
    const crcFields = [offset + cdOffset + p + 16];
    if (lh.readUInt32LE(14) !== 0) crcFields.push(offset + local + 14);
    if ((flags & 0x08) !== 0) {
      const d = read(dataAt + comp, 4);
      crcFields.push(offset + dataAt + comp + (d.readUInt32LE(0) === SIG_DESCRIPTOR ? 4 : 0));
    }
    records.push({ name, dataOffset: offset + dataAt, length: comp, crc32, crcFields });
    p += 46 + nameLen + extraLen + commentLen;
  }
  const sorted = [...records].sort((a, b) => a.dataOffset - b.dataOffset);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.dataOffset < sorted[i - 1]!.dataOffset + sorted[i - 1]!.length)
      bad(`records "${sorted[i - 1]!.name}" and "${sorted[i]!.name}" overlap`);
  }
  const names = new Set<string>();
  for (const r of records) {
    if (names.has(r.name)) bad(`it has two records named "${r.name}"`);
    names.add(r.name);
  }
  return records;
}

/** The torch.save root folder of a segment (`archive/`), found by its `*​/data.pkl`. */
export function segmentRoot(records: SegmentRecord[], file: string, item: string): string {
  const pkl = records.filter((r) => /^[^/]+\/data\.pkl$/.test(r.name));
  if (pkl.length !== 1) {
    throw new PmaError(
      "METADATA_INVALID",
      `${file}: the item "${item}" has ${pkl.length} "<root>/data.pkl" records; a torch.save zip has exactly one.`,
      { file },
    );
  }
  return pkl[0]!.name.slice(0, -"data.pkl".length);
}

export function readRecord(fd: number, file: string, r: SegmentRecord): Uint8Array {
  const out = new Uint8Array(r.length);
  readFullySync(fd, file, out, r.dataOffset);
  return out;
}

export function openForRead(file: string): number {
  try {
    return fs.openSync(file, "r");
  } catch (e) {
    throw new PmaError("IO", `${file}: cannot open: ${(e as Error).message}`, { file, cause: e });
  }
}
