/**
 * Small-file atomic writes for the trainer's outputs and caches: a crash or a concurrent
 * reader never sees a half-written tokenizer or token file under the final name.
 */
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { PmaError } from "./errors.js";

/** Temporary sibling, fsync, rename: readers see the old file or the whole new one. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    const fd = openSync(tmp, "w");
    try {
      const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (cause) {
    rmSync(tmp, { force: true });
    throw new PmaError("IO", `cannot write ${path}: ${(cause as Error).message}`, { file: path, cause });
  }
}
