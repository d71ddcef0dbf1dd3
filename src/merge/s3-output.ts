import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PmaError } from "../common/errors.js";
import { INDEX_FILE } from "../formats/checkpoint-files.js";
import type { TensorSpec } from "../formats/safetensors-writer.js";
import { LocalFileSource } from "../sources/local.js";
import { S3Staging } from "../sources/s3-output.js";
import type { MergeOutput, OutputContext, OutputWriter } from "./outputs.js";

/**
 * A merge written to `s3://bucket/prefix`. Workers write tensor bytes at fixed offsets,
 * which an object store cannot take, so the merge is first written as a local folder in
 * the temporary directory (TMPDIR; it needs the output's size in free space), then each
 * file is uploaded as a staged multipart upload and published with the index and record
 * last (see sources/s3-output.ts). The local copy is removed in every case.
 */
export class S3Output implements MergeOutput {
  private constructor(
    private readonly staging: S3Staging,
    private readonly inner: MergeOutput,
    private readonly spool: string,
    private readonly local: string,
    private readonly signal: AbortSignal | undefined,
  ) {}

  static async create(
    out: string,
    force: boolean,
    makeLocal: (path: string) => Promise<MergeOutput>,
    signal?: AbortSignal,
  ): Promise<S3Output> {
    if (/\.gguf$/i.test(out))
      throw new PmaError(
        "USAGE",
        `--out ${out}: GGUF merges are written to local disk only; write it locally and copy it (aws s3 cp)`,
      );
    const staging = await S3Staging.create(out, { force });
    const spool = await mkdtemp(join(tmpdir(), "pma-s3-out-"));
    const local = join(spool, "merged");
    try {
      return new S3Output(staging, await makeLocal(local), spool, local, signal);
    } catch (e) {
      await rm(spool, { recursive: true, force: true });
      throw e;
    }
  }

  open(specs: TensorSpec[], ctx: OutputContext): Promise<OutputWriter> {
    return this.inner.open(specs, ctx);
  }

  finish(): Promise<{ files: string[]; companionsFrom: string | null }> {
    return this.inner.finish();
  }

  async publish(extraFiles: Record<string, string>): Promise<void> {
    await this.inner.publish({});
    const last = [INDEX_FILE, ...Object.keys(extraFiles)];
    const data: string[] = [];
    for (const name of (await readdir(this.local)).sort()) {
      if (last.includes(name) || !(await stat(join(this.local, name))).isFile()) continue;
      const source = await LocalFileSource.open(join(this.local, name));
      try {
        await this.staging.uploadStaged(name, source, this.signal);
      } finally {
        await source.close();
      }
      data.push(name);
    }
    const lastFiles: [string, string | Uint8Array][] = [];
    const index = await readFile(join(this.local, INDEX_FILE)).catch(() => null);
    if (index !== null) lastFiles.push([INDEX_FILE, index]);
    for (const [name, text] of Object.entries(extraFiles)) lastFiles.push([name, text]);
    await this.staging.publish(data, lastFiles);
    await rm(this.spool, { recursive: true, force: true });
  }

  async discard(): Promise<void> {
    await this.inner.discard().catch(() => undefined);
    await this.staging.discard();
    await rm(this.spool, { recursive: true, force: true });
  }
}
