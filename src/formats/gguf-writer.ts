import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { exists } from "../common/exists.js";
import { acquireLock, type Lock } from "../common/lock.js";
import { encodeGgufHeader, type EncodedGgufHeader, type GgufTensorSpec } from "./gguf-encode.js";
import type { GgufMetadata } from "./gguf-values.js";
import { ioError, writeFully, writeFullySync } from "../common/positional-io.js";
import type { TensorLayout } from "./safetensors-writer.js";

export {
  encodeGgufHeader,
  ggufDims,
  planGgufTensors,
  type GgufTensorSpec,
  type EncodedGgufHeader,
  type PlannedGgufTensor,
} from "./gguf-encode.js";

export interface GgufWriterOptions {
  /** Replace an existing file at the path (only when the new one is complete). */
  force?: boolean;
}

/** Temporary files of this process, removed if it exits before they are published. */
const LIVE = new Set<string>();
let exitHookInstalled = false;
function track(path: string): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const p of LIVE) fs.rmSync(p, { force: true });
    });
  }
  LIVE.add(path);
}

function existsError(path: string): PmaError {
  return new PmaError(
    "EXISTS",
    `${path} already exists; choose another --out or pass --force to replace it`,
    { file: path },
  );
}

/**
 * Writes one GGUF v3 file whose layout is fixed up front: `create` writes the header
 * into a temporary sibling and sizes the file, so tensor bytes can then land at known
 * positions in any order, from this thread or from workers that open `layout(name).file`
 * themselves. `finish` fsyncs and renames the file into place, so the path holds a
 * complete file or nothing. Output is always a single file (GGUF splits are not written).
 * A lock file beside the target (`.<name>.pma-lock`) keeps a second process from
 * writing the same path; holding it, `create` removes temporary files that a killed
 * writer of that path left behind.
 */
export class GgufWriter {
  /** Where the finished file will be. */
  readonly path: string;
  /** Where bytes are written until `finish`. */
  readonly tempPath: string;
  readonly header: EncodedGgufHeader;
  readonly fileSize: number;
  private readonly layouts: Map<string, TensorLayout>;
  private readonly force: boolean;
  private fd: number | null;
  private state: "open" | "finished" | "aborted" = "open";

  private constructor(
    path: string,
    tempPath: string,
    fd: number,
    header: EncodedGgufHeader,
    force: boolean,
    private readonly lock: Lock,
  ) {
    this.path = path;
    this.tempPath = tempPath;
    this.fd = fd;
    this.header = header;
    this.force = force;
    this.fileSize = header.dataStart + header.dataLength;
    this.layouts = new Map(
      header.tensors.map((t) => [
        t.name,
        { file: tempPath, fileOffset: header.dataStart + t.offset, byteLength: t.byteLength },
      ]),
    );
  }

  static async create(
    path: string,
    metadata: GgufMetadata,
    tensors: readonly GgufTensorSpec[],
    opts: GgufWriterOptions = {},
  ): Promise<GgufWriter> {
    const target = resolve(path);
    const force = opts.force ?? false;
    let header: EncodedGgufHeader;
    try {
      header = encodeGgufHeader(metadata, tensors);
    } catch (e) {
      if (e instanceof PmaError)
        throw new PmaError(e.code, `${target}: ${e.message}`, { file: target, cause: e });
      throw e;
    }
    if (!force && (await exists(target))) throw existsError(target);
    try {
      await fs.promises.mkdir(dirname(target), { recursive: true });
    } catch (e) {
      throw ioError(dirname(target), "mkdir", e);
    }
    const lock = await acquireLock(
      join(dirname(target), `.${basename(target)}.pma-lock`),
      `writing ${target}`,
    );
    const tempPrefix = `.${basename(target)}.pma-tmp-`;
    const tempPath = join(dirname(target), `${tempPrefix}${process.pid}-${randomBytes(4).toString("hex")}`);
    let fd: number;
    try {
      // Ours now: a temporary file of this name was left by a writer that died.
      for (const n of await fs.promises.readdir(dirname(target)))
        if (n.startsWith(tempPrefix)) await fs.promises.rm(join(dirname(target), n), { force: true });
      if (!force && (await exists(target))) throw existsError(target);
      fd = fs.openSync(tempPath, "wx");
    } catch (e) {
      await lock.release();
      throw e instanceof PmaError ? e : ioError(tempPath, "create", e);
    }
    track(tempPath);
    try {
      await writeFully(fd, tempPath, header.bytes, 0);
      fs.ftruncateSync(fd, header.dataStart + header.dataLength);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tempPath, { force: true });
      LIVE.delete(tempPath);
      await lock.release();
      throw e instanceof PmaError ? e : ioError(tempPath, "resize", e);
    }
    return new GgufWriter(target, tempPath, fd, header, force, lock);
  }

  /** Tensor names in data order. */
  get order(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  layout(name: string): TensorLayout {
    const l = this.layouts.get(name);
    if (!l)
      throw new PmaError("TENSOR_NOT_FOUND", `${this.path}: the output has no tensor named "${name}".`, {
        file: this.path,
      });
    return { ...l };
  }

  private target(name: string, byteOffset: number, length: number): { fd: number; position: number } {
    if (this.state !== "open" || this.fd === null) {
      throw new PmaError("INTERNAL", `${this.path}: write of "${name}" after the writer was ${this.state}.`, {
        file: this.path,
      });
    }
    const l = this.layout(name);
    if (!(Number.isSafeInteger(byteOffset) && byteOffset >= 0 && byteOffset + length <= l.byteLength)) {
      throw new PmaError(
        "RANGE_INVALID",
        `${this.path}: write of ${length} bytes at ${byteOffset} falls outside tensor "${name}" of ${l.byteLength} bytes.`,
        {
          file: this.path,
        },
      );
    }
    return { fd: this.fd, position: l.fileOffset + byteOffset };
  }

  /** Writes bytes of one tensor starting `byteOffset` bytes into it. */
  async write(name: string, byteOffset: number, data: Uint8Array): Promise<void> {
    const t = this.target(name, byteOffset, data.length);
    await writeFully(t.fd, this.tempPath, data, t.position);
  }

  writeSync(name: string, byteOffset: number, data: Uint8Array): void {
    const t = this.target(name, byteOffset, data.length);
    writeFullySync(t.fd, this.tempPath, data, t.position);
  }

  /** Makes the file durable and moves it to `path`; an existing file is replaced only with `force`. */
  async finish(): Promise<string> {
    if (this.state !== "open" || this.fd === null) {
      throw new PmaError("INTERNAL", `${this.path}: finish() on a writer that was already ${this.state}.`, {
        file: this.path,
      });
    }
    const fd = this.fd;
    this.fd = null;
    this.state = "finished";
    try {
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      // Checked again: the path may have appeared while we wrote.
      if (!this.force && (await exists(this.path))) throw existsError(this.path);
      await fs.promises.rename(this.tempPath, this.path);
    } catch (e) {
      await fs.promises.rm(this.tempPath, { force: true });
      LIVE.delete(this.tempPath);
      await this.lock.release();
      throw e instanceof PmaError ? e : ioError(this.path, "publish", e);
    }
    LIVE.delete(this.tempPath);
    try {
      const dir = fs.openSync(dirname(this.path), "r");
      try {
        fs.fsyncSync(dir);
      } finally {
        fs.closeSync(dir);
      }
    } finally {
      await this.lock.release();
    }
    return this.path;
  }

  /** Closes and removes the temporary file; the path is left as it was. */
  async abort(): Promise<void> {
    if (this.state !== "open") return;
    this.state = "aborted";
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    try {
      await fs.promises.rm(this.tempPath, { force: true });
      LIVE.delete(this.tempPath);
    } finally {
      await this.lock.release();
    }
  }
}

export interface GgufTensorData extends GgufTensorSpec {
  data: Uint8Array;
}

/** Writes a whole GGUF file from in-memory tensors (small files, tests, converters). */
export async function writeGguf(
  path: string,
  metadata: GgufMetadata,
  tensors: readonly GgufTensorData[],
  opts: GgufWriterOptions = {},
): Promise<string> {
  const writer = await GgufWriter.create(path, metadata, tensors, opts);
  try {
    for (const t of tensors) {
      const { byteLength } = writer.layout(t.name);
      if (t.data.length !== byteLength) {
        throw new PmaError(
          "TENSOR_SIZE_MISMATCH",
          `${writer.path}: tensor "${t.name}" needs ${byteLength} bytes, got ${t.data.length}.`,
          { file: writer.path },
        );
      }
      await writer.write(t.name, 0, t.data);
    }
    return await writer.finish();
  } catch (e) {
    await writer.abort();
    throw e;
  }
}
