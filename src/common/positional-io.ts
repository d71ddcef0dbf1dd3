import * as fs from "node:fs";
import { fsError, PmaError } from "./errors.js";

/**
 * Positional reads and writes that loop over short transfers. A single fs.read/write
 * may move fewer bytes than asked (and at most 2 GiB), so callers never see a partial
 * buffer; a read that hits end of file means the file shrank under us.
 */
const MAX_CHUNK = 1 << 30;

function shrunk(path: string, position: number): PmaError {
  return new PmaError(
    "IO",
    `${path}: unexpected end of file at byte ${position}; the file was truncated while open.`,
    { file: path },
  );
}

function ioError(path: string, what: string, e: unknown): PmaError {
  return fsError(path, what, e);
}

export function readFullySync(fd: number, path: string, into: Uint8Array, position: number): void {
  let done = 0;
  while (done < into.length) {
    let got: number;
    try {
      got = fs.readSync(fd, into, done, Math.min(into.length - done, MAX_CHUNK), position + done);
    } catch (e) {
      throw ioError(path, "read", e);
    }
    if (got === 0) throw shrunk(path, position + done);
    done += got;
  }
}

function readAsync(
  fd: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

export async function readFully(fd: number, path: string, into: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    let got: number;
    try {
      got = await readAsync(fd, into, done, Math.min(into.length - done, MAX_CHUNK), position + done);
    } catch (e) {
      throw ioError(path, "read", e);
    }
    if (got === 0) throw shrunk(path, position + done);
    done += got;
  }
}

export function writeFullySync(fd: number, path: string, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) {
    try {
      done += fs.writeSync(fd, data, done, Math.min(data.length - done, MAX_CHUNK), position + done);
    } catch (e) {
      throw ioError(path, "write", e);
    }
  }
}

function writeAsync(
  fd: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

export async function writeFully(
  fd: number,
  path: string,
  data: Uint8Array,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < data.length) {
    try {
      done += await writeAsync(fd, data, done, Math.min(data.length - done, MAX_CHUNK), position + done);
    } catch (e) {
      throw ioError(path, "write", e);
    }
  }
}

export { ioError };
