import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { PmaError } from "../common/errors.js";
import { fillFromBody, IdleWatchdog } from "./body.js";
import { parseRetryAfter, TransientError, withRetries } from "./retry.js";
import { s3Client, s3ErrorInfo, s3Uri, type S3Location } from "./s3-client.js";
import { checkRange, sameEtag, type PositionalSource, type SourceRef } from "./source.js";

/** An SDK failure as pma sees it: transient (retried), or a PmaError that says what to do. */
export function classifyS3Error(e: unknown, uri: string, what: string): unknown {
  if (e instanceof PmaError || e instanceof TransientError) return e;
  const { name, status, retryAfter } = s3ErrorInfo(e);
  if (
    status !== undefined &&
    (status === 429 || status >= 500 || name === "SlowDown" || name === "RequestTimeout")
  ) {
    return new TransientError(`${what}: ${name || "HTTP"} ${status}`, parseRetryAfter(retryAfter));
  }
  if (name === "PreconditionFailed" || status === 412) {
    return new PmaError(
      "SOURCE_CHANGED",
      `${uri}: the object changed during the merge (its ETag no longer matches); merge from objects that do not change while pma runs.`,
      { file: uri },
    );
  }
  if (name === "NoSuchKey" || name === "NotFound" || status === 404)
    return new PmaError("IO", `${uri}: no such object; check the bucket and key.`, { file: uri, cause: e });
  if (name === "NoSuchBucket") return new PmaError("IO", `${uri}: no such bucket.`, { file: uri, cause: e });
  if (status === 403 || name === "AccessDenied") {
    return new PmaError(
      "IO",
      `${uri}: access denied; check the AWS credentials and region the SDK found (AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT_URL_S3).`,
      { file: uri, cause: e },
    );
  }
  if (status !== undefined)
    return new PmaError("IO", `${uri}: ${what} failed: ${name} (HTTP ${status}).`, { file: uri, cause: e });
  return e;
}

/**
 * One S3 object read with ranged GetObject. Size and ETag are pinned at open; every
 * GET sends If-Match with that ETag (stores that honour it refuse a changed object) and
 * its answer is checked again here (for stores that do not), along with the length and
 * Content-Range of every response.
 */
export class S3Source implements PositionalSource {
  readonly ref: SourceRef;
  readonly uri: string;

  private constructor(
    private readonly loc: S3Location,
    readonly size: number,
    private readonly etag: string | null,
  ) {
    this.uri = s3Uri(loc);
    this.ref = { kind: "s3", bucket: loc.bucket, key: loc.key, size, etag };
  }

  static async open(loc: S3Location, known?: { size: number; etag: string | null }): Promise<S3Source> {
    if (known !== undefined) return new S3Source(loc, known.size, known.etag);
    const uri = s3Uri(loc);
    const head = await withRetries(`${uri}: HeadObject`, async () => {
      try {
        return await s3Client().send(new HeadObjectCommand({ Bucket: loc.bucket, Key: loc.key }));
      } catch (e) {
        throw classifyS3Error(e, uri, "HeadObject");
      }
    });
    return new S3Source(loc, head.ContentLength ?? 0, head.ETag ?? null);
  }

  static fromRef(ref: Extract<SourceRef, { kind: "s3" }>): S3Source {
    return new S3Source({ bucket: ref.bucket, key: ref.key }, ref.size, ref.etag);
  }

  async read(into: Uint8Array, position: number, signal?: AbortSignal): Promise<void> {
    if (into.length === 0) return;
    checkRange(this.uri, this.size, position, into.length);
    // Absolute ranges only: some stores answer suffix ranges (bytes=-N) wrongly.
    const last = position + into.length - 1;
    const what = `${this.uri}: bytes ${position}-${last}`;
    await withRetries(
      what,
      async () => {
        const watchdog = new IdleWatchdog(undefined, signal);
        try {
          const res = await s3Client()
            .send(
              new GetObjectCommand({
                Bucket: this.loc.bucket,
                Key: this.loc.key,
                Range: `bytes=${position}-${last}`,
                ...(this.etag !== null ? { IfMatch: this.etag } : {}),
              }),
              { abortSignal: watchdog.signal },
            )
            .catch((e: unknown) => {
              throw classifyS3Error(e, this.uri, "GetObject");
            });
          const body = res.Body as AsyncIterable<Uint8Array> & { destroy?: () => void };
          const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.ContentRange ?? "");
          const problem =
            range === null || Number(range[1]) !== position || Number(range[2]) !== last
              ? `Content-Range "${res.ContentRange ?? ""}" is not the range asked for`
              : res.ContentLength !== undefined && res.ContentLength !== into.length
                ? `Content-Length ${res.ContentLength} is not the ${into.length} bytes asked for`
                : null;
          if (problem !== null) {
            body?.destroy?.();
            throw new PmaError("IO", `${what}: ${problem}.`, { file: this.uri });
          }
          if (Number(range![3]) !== this.size || !sameEtag(res.ETag, this.etag)) {
            body?.destroy?.();
            throw new PmaError(
              "SOURCE_CHANGED",
              `${this.uri}: the object changed during the merge (size ${this.size} -> ${range![3]}, ETag ${this.etag} -> ${res.ETag}); merge from objects that do not change while pma runs.`,
              { file: this.uri },
            );
          }
          await fillFromBody(body, into, what, watchdog);
        } catch (e) {
          throw watchdog.wrap(e, what);
        } finally {
          watchdog.done();
        }
      },
      undefined,
      signal,
    );
  }

  async close(): Promise<void> {}
}

/** Every object under `prefix` (a "folder" when it ends in /), with size and ETag, in key order. */
export async function listS3(loc: S3Location): Promise<{ key: string; size: number; etag: string | null }[]> {
  const out: { key: string; size: number; etag: string | null }[] = [];
  let token: string | undefined;
  const uri = s3Uri(loc);
  do {
    const page = await withRetries(`${uri}: ListObjectsV2`, async () => {
      try {
        return await s3Client().send(
          new ListObjectsV2Command({
            Bucket: loc.bucket,
            Prefix: loc.key,
            ...(token !== undefined ? { ContinuationToken: token } : {}),
          }),
        );
      } catch (e) {
        throw classifyS3Error(e, uri, "ListObjectsV2");
      }
    });
    for (const o of page.Contents ?? [])
      if (o.Key !== undefined) out.push({ key: o.Key, size: o.Size ?? 0, etag: o.ETag ?? null });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
