import { createHash, randomBytes } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { PmaError } from "../common/errors.js";
import { withRetries } from "./retry.js";
import { classifyS3Error, listS3 } from "./s3.js";
import { parseS3Uri, s3Client, s3Uri, type S3Location } from "./s3-client.js";
import type { PositionalSource } from "./source.js";

/**
 * A checkpoint written to S3 so that a reader never sees half of it.
 *
 * S3 has no rename, so atomicity comes from multipart uploads, which stay invisible
 * until completed. Each data file (a shard, a companion) is uploaded as a multipart
 * upload to its final key and left open; a small manifest naming the upload and its
 * parts is written under a hidden staging prefix beside the output
 * (`.<name>.pma-staging-<id>/`). Publishing completes every staged upload, then writes
 * the index and the merge record, last, then removes the staging prefix. Discarding
 * aborts the uploads and removes the staging prefix. A process killed outright leaves
 * only invisible parts and the staging prefix: nothing under the output prefix; a
 * bucket lifecycle rule (AbortIncompleteMultipartUpload) reclaims the parts.
 *
 * The pieces are separate so that several processes can write one output: each calls
 * `uploadStaged` for its own files with the same staging id, and one `publish` ends it.
 */

/** Part size: 16 MiB, or larger for files past 16 MiB x 9,000 parts (S3 allows 10,000). */
export function partSizeFor(size: number): number {
  const min = 16 * 1024 * 1024;
  return Math.max(min, Math.ceil(size / 9000 / (1024 * 1024)) * 1024 * 1024);
}

/** Parts uploaded at once per file: with 16 MiB parts, 64 MiB of buffers. */
const PART_CONCURRENCY = 4;

interface Manifest {
  name: string;
  key: string;
  uploadId: string;
  size: number;
  parts: { PartNumber: number; ETag: string }[];
}

const MANIFEST_SUFFIX = ".upload.json";

export class S3Staging {
  /** Key prefix of the output, ending in "/". */
  readonly prefix: string;
  /** Key prefix of the staging area, ending in "/". */
  readonly stagingPrefix: string;
  private readonly open = new Map<string, { key: string; uploadId: string }>();

  private constructor(
    readonly out: S3Location,
    readonly id: string,
  ) {
    const key = out.key.replace(/\/+$/, "");
    const slash = key.lastIndexOf("/");
    this.prefix = `${key}/`;
    this.stagingPrefix = `${key.slice(0, slash + 1)}.${key.slice(slash + 1)}.pma-staging-${id}/`;
  }

  get uri(): string {
    return s3Uri({ bucket: this.out.bucket, key: this.prefix.replace(/\/$/, "") });
  }

  /**
   * Starts (or, with the same `id`, joins) an S3 output. Refuses an output prefix that
   * already holds objects unless `force`; pass `checkExisting: false` from a process that
   * only adds its files to a staging area another process created.
   */
  static async create(
    uri: string,
    opts: { force?: boolean; id?: string; checkExisting?: boolean } = {},
  ): Promise<S3Staging> {
    const out = parseS3Uri(uri);
    if (out.key.replace(/\/+$/, "") === "")
      throw new PmaError(
        "USAGE",
        `--out ${uri}: give a prefix inside the bucket (s3://bucket/prefix), not the bucket itself`,
      );
    if (opts.id !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(opts.id))
      throw new PmaError("USAGE", `staging id "${opts.id}" must be 1-64 letters, digits, - or _`);
    const staging = new S3Staging(out, opts.id ?? `${process.pid}-${randomBytes(4).toString("hex")}`);
    if (opts.checkExisting !== false && !opts.force) {
      const existing = await listS3({ bucket: out.bucket, key: staging.prefix });
      if (existing.length > 0)
        throw new PmaError(
          "EXISTS",
          `${staging.uri} already holds ${existing.length} object(s); choose another --out or pass --force to replace it`,
          { file: staging.uri },
        );
    }
    return staging;
  }

  private manifestKey(name: string): string {
    return `${this.stagingPrefix}${name}${MANIFEST_SUFFIX}`;
  }

  /**
   * Uploads one file's bytes to `<output>/<name>` as a multipart upload, left open and
   * invisible until publish; a failure or abort aborts it. Reads the source part by
   * part, so memory stays at a few parts whatever the file size.
   */
  async uploadStaged(name: string, source: PositionalSource, signal?: AbortSignal): Promise<void> {
    checkName(name);
    const key = `${this.prefix}${name}`;
    const uri = s3Uri({ bucket: this.out.bucket, key });
    const client = s3Client();
    const created = await withRetries(`${uri}: CreateMultipartUpload`, async () => {
      try {
        return await client.send(new CreateMultipartUploadCommand({ Bucket: this.out.bucket, Key: key }));
      } catch (e) {
        throw classifyS3Error(e, uri, "CreateMultipartUpload");
      }
    });
    const uploadId = created.UploadId!;
    this.open.set(name, { key, uploadId });
    try {
      const parts = await uploadParts(this.out.bucket, key, uploadId, source, uri, signal);
      const manifest: Manifest = { name, key, uploadId, size: source.size, parts };
      await putObject(this.out.bucket, this.manifestKey(name), JSON.stringify(manifest));
    } catch (e) {
      await abortUpload(this.out.bucket, key, uploadId);
      this.open.delete(name);
      throw e;
    }
  }

  /** The names staged so far, by any process using this staging id. */
  async staged(): Promise<string[]> {
    const objects = await listS3({ bucket: this.out.bucket, key: this.stagingPrefix });
    return objects
      .filter((o) => o.key.endsWith(MANIFEST_SUFFIX))
      .map((o) => o.key.slice(this.stagingPrefix.length, -MANIFEST_SUFFIX.length));
  }

  /**
   * Makes the output visible: checks every file in `expected` is staged, completes the
   * staged uploads, writes `last` (index, then record) in the order given, removes objects
   * of a previous output that the new one does not have, and removes the staging prefix.
   */
  async publish(expected: string[], last: [string, string | Uint8Array][]): Promise<void> {
    const staged = new Set(await this.staged());
    const missing = expected.filter((n) => !staged.has(n));
    if (missing.length > 0)
      throw new PmaError(
        "IO",
        `${this.uri}: cannot publish, ${missing.length} file(s) were never uploaded (${missing.slice(0, 3).join(", ")}); run the missing parts again`,
        { file: this.uri },
      );
    const manifests = await Promise.all([...staged].map((n) => this.readManifest(n)));
    const previous = await listS3({ bucket: this.out.bucket, key: this.prefix });
    // An old record or index must not describe a mix of old and new files while this runs.
    for (const name of last.map(([n]) => n)) {
      if (previous.some((o) => o.key === `${this.prefix}${name}`))
        await deleteObject(this.out.bucket, `${this.prefix}${name}`);
    }
    for (const m of manifests) await completeUpload(this.out.bucket, m);
    for (const [name, body] of last) await putObject(this.out.bucket, `${this.prefix}${name}`, body);
    const keep = new Set([...manifests.map((m) => m.key), ...last.map(([n]) => `${this.prefix}${n}`)]);
    for (const o of previous) if (!keep.has(o.key)) await deleteObject(this.out.bucket, o.key);
    await this.removeStaging();
    this.open.clear();
  }

  /** Aborts every upload staged here (by any process) and removes the staging prefix. */
  async discard(): Promise<void> {
    const names = await this.staged().catch(() => [] as string[]);
    for (const name of names) {
      const m = await this.readManifest(name).catch(() => null);
      if (m !== null) await abortUpload(this.out.bucket, m.key, m.uploadId);
    }
    for (const { key, uploadId } of this.open.values()) await abortUpload(this.out.bucket, key, uploadId);
    this.open.clear();
    await this.removeStaging().catch(() => undefined);
  }

  private async removeStaging(): Promise<void> {
    for (const o of await listS3({ bucket: this.out.bucket, key: this.stagingPrefix }))
      await deleteObject(this.out.bucket, o.key);
  }

  private async readManifest(name: string): Promise<Manifest> {
    const key = this.manifestKey(name);
    const uri = s3Uri({ bucket: this.out.bucket, key });
    const text = await withRetries(`${uri}: GetObject`, async () => {
      try {
        const res = await s3Client().send(new GetObjectCommand({ Bucket: this.out.bucket, Key: key }));
        return await res.Body!.transformToString();
      } catch (e) {
        throw classifyS3Error(e, uri, "GetObject");
      }
    });
    const m = JSON.parse(text) as Manifest;
    if (typeof m.uploadId !== "string" || !Array.isArray(m.parts) || m.key !== `${this.prefix}${name}`) {
      throw new PmaError(
        "IO",
        `${uri}: not a staging manifest of ${this.uri}; remove the staging prefix and run again`,
        { file: uri },
      );
    }
    return m;
  }
}

function checkName(name: string): void {
  if (name === "" || name.includes("/") || name.startsWith(".") || name.endsWith(MANIFEST_SUFFIX)) {
    throw new PmaError("USAGE", `"${name}" cannot be an output file name`);
  }
}

async function uploadParts(
  bucket: string,
  key: string,
  uploadId: string,
  source: PositionalSource,
  uri: string,
  signal?: AbortSignal,
): Promise<Manifest["parts"]> {
  const partSize = partSizeFor(source.size);
  const count = Math.max(1, Math.ceil(source.size / partSize));
  const parts: Manifest["parts"] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (;;) {
      if (signal?.aborted)
        throw new PmaError("INTERRUPTED", `${uri}: upload interrupted; nothing was published`);
      const i = next++;
      if (i >= count) return;
      const start = i * partSize;
      const body = Buffer.allocUnsafe(Math.min(partSize, source.size - start));
      await source.read(body, start, signal);
      const md5 = createHash("md5").update(body).digest();
      const what = `${uri}: part ${i + 1} of ${count}`;
      const res = await withRetries(
        what,
        async () => {
          try {
            return await s3Client().send(
              new UploadPartCommand({
                Bucket: bucket,
                Key: key,
                UploadId: uploadId,
                PartNumber: i + 1,
                Body: body,
                ContentLength: body.length,
                ContentMD5: md5.toString("base64"),
              }),
              signal ? { abortSignal: signal } : {},
            );
          } catch (e) {
            throw classifyS3Error(e, uri, "UploadPart");
          }
        },
        undefined,
        signal,
      );
      const etag = res.ETag ?? "";
      // Without server-side KMS encryption a part's ETag is its MD5: a free check that the store got these bytes.
      const hex = etag.replace(/"/g, "");
      if (/^[0-9a-f]{32}$/.test(hex) && hex !== md5.toString("hex"))
        throw new PmaError(
          "IO",
          `${what}: the store acknowledged different bytes (ETag ${hex}, sent MD5 ${md5.toString("hex")}); try again`,
          { file: uri },
        );
      parts[i] = { PartNumber: i + 1, ETag: etag };
    }
  };
  await Promise.all(Array.from({ length: Math.min(PART_CONCURRENCY, count) }, worker));
  return parts;
}

async function completeUpload(bucket: string, m: Manifest): Promise<void> {
  const uri = s3Uri({ bucket, key: m.key });
  await withRetries(`${uri}: CompleteMultipartUpload`, async () => {
    try {
      await s3Client().send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: m.key,
          UploadId: m.uploadId,
          MultipartUpload: { Parts: m.parts },
        }),
      );
    } catch (e) {
      throw classifyS3Error(e, uri, "CompleteMultipartUpload");
    }
  }).catch(async (e: unknown) => {
    // A retried completion whose first try succeeded finds no upload: the object is there.
    const head = await s3Client()
      .send(new HeadObjectCommand({ Bucket: bucket, Key: m.key }))
      .catch(() => null);
    if (head?.ContentLength !== m.size) throw e;
  });
  const head = await withRetries(`${uri}: HeadObject`, async () => {
    try {
      return await s3Client().send(new HeadObjectCommand({ Bucket: bucket, Key: m.key }));
    } catch (e) {
      throw classifyS3Error(e, uri, "HeadObject");
    }
  });
  if (head.ContentLength !== m.size)
    throw new PmaError(
      "IO",
      `${uri}: the store holds ${head.ContentLength} bytes after the upload, not ${m.size}; run the merge again`,
      { file: uri },
    );
}

async function abortUpload(bucket: string, key: string, uploadId: string): Promise<void> {
  // Best effort: some S3-compatible stores lack AbortMultipartUpload; the parts stay invisible either way.
  await s3Client()
    .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))
    .catch(() => undefined);
}

async function putObject(bucket: string, key: string, body: string | Uint8Array): Promise<void> {
  const uri = s3Uri({ bucket, key });
  await withRetries(`${uri}: PutObject`, async () => {
    try {
      await s3Client().send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ContentLength: Buffer.byteLength(body),
        }),
      );
    } catch (e) {
      throw classifyS3Error(e, uri, "PutObject");
    }
  });
}

async function deleteObject(bucket: string, key: string): Promise<void> {
  const uri = s3Uri({ bucket, key });
  await withRetries(`${uri}: DeleteObject`, async () => {
    try {
      await s3Client().send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    } catch (e) {
      throw classifyS3Error(e, uri, "DeleteObject");
    }
  });
}
