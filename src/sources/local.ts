import * as fs from "node:fs";
import { promisify } from "node:util";
import { fsError, PmaError } from "../common/errors.js";
import { readFully, readFullySync } from "../common/positional-io.js";
import type { PositionalSource, SourceRef } from "./source.js";

const openAsync = promisify(fs.open);
const fstatAsync = promisify(fs.fstat);
const closeAsync = promisify(fs.close);

/**
 * A local file read by position through one fd. close() waits for reads in flight so
 * the fd number is never reused under them.
 */
export class LocalFileSource implements PositionalSource {
  readonly ref: SourceRef;
  private fd: number | null;
  private readonly inflight = new Set<Promise<unknown>>();

  private constructor(
    readonly uri: string,
    fd: number,
    readonly size: number,
  ) {
    this.fd = fd;
    this.ref = { kind: "file", path: uri };
  }

  /** Opens `path` read-only; `kind` names the expected file for the not-a-file message. */
  static async open(path: string, kind = "checkpoint"): Promise<LocalFileSource> {
    let fd: number;
    try {
      fd = await openAsync(path, "r");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException | undefined)?.code;
      if (code === "ENOENT") throw new PmaError("IO", `${path}: no such file.`, { file: path, cause: e });
      if (code === "EACCES")
        throw new PmaError("IO", `${path}: permission denied; check the file's permissions.`, {
          file: path,
          cause: e,
        });
      throw fsError(path, "open", e);
    }
    try {
      const st = await fstatAsync(fd);
      if (!st.isFile())
        throw new PmaError("IO", `${path}: not a regular file; expected a ${kind} file.`, { file: path });
      return new LocalFileSource(path, fd, st.size);
    } catch (e) {
      await closeAsync(fd).catch(() => undefined);
      throw e;
    }
  }

  private open(doing: string): number {
    if (this.fd === null)
      throw new PmaError("IO", `${this.uri}: ${doing} after close().`, { file: this.uri });
    return this.fd;
  }

  async read(into: Uint8Array, position: number): Promise<void> {
    const fd = this.open("read");
    const pending = readFully(fd, this.uri, into, position);
    this.inflight.add(pending);
    try {
      await pending;
    } finally {
      this.inflight.delete(pending);
    }
  }

  readSync(into: Uint8Array, position: number): void {
    readFullySync(this.open("read"), this.uri, into, position);
  }

  async close(): Promise<void> {
    const fd = this.fd;
    if (fd === null) return;
    this.fd = null;
    await Promise.allSettled([...this.inflight]);
    await closeAsync(fd);
  }
}
