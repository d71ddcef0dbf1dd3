import { crc32 } from "node:zlib";
import { readFullySync } from "../common/positional-io.js";

const PIECE = 8 << 20;

/** CRC-32 (the zip polynomial) of bytes [start, start + length) of an open file, read in 8 MiB pieces. */
export function crc32OfRange(
  fd: number,
  file: string,
  start: number,
  length: number,
  scratch?: Uint8Array,
): number {
  const buf = scratch ?? new Uint8Array(Math.min(PIECE, Math.max(length, 1)));
  let crc = 0;
  for (let p = 0; p < length; p += buf.length) {
    const n = Math.min(buf.length, length - p);
    readFullySync(fd, file, buf.subarray(0, n), start + p);
    crc = crc32(buf.subarray(0, n), crc);
  }
  return crc >>> 0;
}
