import { PmaError } from "../common/errors.js";
import { fillFromBody, IdleWatchdog } from "./body.js";
import { hubAuthHeaders } from "./hub-env.js";
import { parseRetryAfter, TransientError, withRetries } from "./retry.js";
import { checkRange, sameEtag, type PositionalSource, type SourceRef } from "./source.js";

/** `bytes a-b/total` -> its parts; null when malformed. */
function parseContentRange(
  value: string | null,
): { start: number; end: number; total: number | null } | null {
  const m = value === null ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (m === null) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === "*" ? null : Number(m[3]) };
}

/** The status codes worth retrying: throttling and server-side failures. */
function transientStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** A response that is not the bytes asked for, as an error that says what to do. */
function statusError(uri: string, status: number): PmaError {
  if (status === 401 || status === 403) {
    return new PmaError(
      "IO",
      `${uri}: access denied (HTTP ${status}); for a gated or private Hub repository set HF_TOKEN to a token with read access.`,
      { file: uri },
    );
  }
  if (status === 404)
    return new PmaError(
      "IO",
      `${uri}: not found (HTTP 404); check the URL, repository, revision and file name.`,
      { file: uri },
    );
  return new PmaError("IO", `${uri}: unexpected HTTP ${status} for a byte-range request.`, { file: uri });
}

/**
 * A file behind an HTTP(S) URL, read with `Range` requests. At open it learns the size
 * and ETag from a one-byte ranged GET (HEAD is not always answered like GET by CDNs);
 * every later response must carry the same total size and ETag, or the read fails with
 * SOURCE_CHANGED rather than mixing two versions of the file.
 */
export class HttpSource implements PositionalSource {
  readonly ref: SourceRef;

  private constructor(
    readonly uri: string,
    private readonly url: string,
    readonly size: number,
    private readonly etag: string | null,
    private readonly auth: "hf" | null,
  ) {
    this.ref = { kind: "http", url, size, etag, auth };
  }

  /** `display` is what messages show (an hf:// name, say); the URL itself carries no secret either. */
  static async open(
    url: string,
    opts: { auth?: "hf" | null; display?: string; size?: number; etag?: string | null } = {},
  ): Promise<HttpSource> {
    const auth = opts.auth ?? null;
    const display = opts.display ?? url;
    if (opts.size !== undefined && opts.etag !== undefined)
      return new HttpSource(display, url, opts.size, opts.etag, auth);
    const probe = await withRetries(`${display}: size`, () =>
      rangedGet(url, display, 0, 0, auth, null, null),
    );
    if (probe.total === null)
      throw new PmaError(
        "IO",
        `${display}: the server did not say the file's size in Content-Range; pma needs a server that supports byte ranges.`,
        { file: display },
      );
    return new HttpSource(display, url, probe.total, probe.etag, auth);
  }

  static fromRef(ref: Extract<SourceRef, { kind: "http" }>, display?: string): HttpSource {
    return new HttpSource(display ?? ref.url, ref.url, ref.size, ref.etag, ref.auth);
  }

  async read(into: Uint8Array, position: number, signal?: AbortSignal): Promise<void> {
    if (into.length === 0) return;
    checkRange(this.uri, this.size, position, into.length);
    const last = position + into.length - 1;
    await withRetries(
      `${this.uri}: bytes ${position}-${last}`,
      async () => {
        const got = await rangedGet(this.url, this.uri, position, last, this.auth, into, signal ?? null);
        if (got.total !== null && got.total !== this.size) {
          throw new PmaError(
            "SOURCE_CHANGED",
            `${this.uri}: the file is now ${got.total} bytes, not the ${this.size} it had when opened; it changed during the merge. Merge from a fixed revision or a copy that does not change.`,
            { file: this.uri },
          );
        }
        if (!sameEtag(got.etag, this.etag)) {
          throw new PmaError(
            "SOURCE_CHANGED",
            `${this.uri}: the file changed during the merge (ETag ${this.etag} when opened, ${got.etag} now). Merge from a fixed revision or a copy that does not change.`,
            { file: this.uri },
          );
        }
      },
      undefined,
      signal,
    );
  }

  async close(): Promise<void> {}
}

/**
 * One ranged GET of bytes [start, end]. With `into` the body is copied there (exactly
 * end - start + 1 bytes); without, it is drained. Transient failures come back as
 * TransientError or network errors for withRetries; wrong answers as PmaError.
 */
async function rangedGet(
  url: string,
  uri: string,
  start: number,
  end: number,
  auth: "hf" | null,
  into: Uint8Array | null,
  signal: AbortSignal | null,
): Promise<{ total: number | null; etag: string | null }> {
  const watchdog = new IdleWatchdog(undefined, signal ?? undefined);
  const what = `${uri}: bytes ${start}-${end}`;
  try {
    const res = await fetch(url, {
      headers: { Range: `bytes=${start}-${end}`, ...(auth === "hf" ? hubAuthHeaders() : {}) },
      signal: watchdog.signal,
      redirect: "follow",
    });
    if (transientStatus(res.status)) {
      await res.body?.cancel().catch(() => undefined);
      throw new TransientError(
        `${what}: HTTP ${res.status}`,
        parseRetryAfter(res.headers.get("retry-after")),
      );
    }
    if (res.status !== 206) {
      await res.body?.cancel().catch(() => undefined);
      if (res.status === 200) {
        throw new PmaError(
          "IO",
          `${uri}: the server ignored the Range header and sent the whole file; pma reads remote files by byte ranges only. Use a server or URL that supports ranges.`,
          { file: uri },
        );
      }
      throw statusError(uri, res.status);
    }
    const range = parseContentRange(res.headers.get("content-range"));
    if (range === null || range.start !== start || range.end !== end) {
      await res.body?.cancel().catch(() => undefined);
      throw new PmaError(
        "IO",
        `${what}: the server answered with Content-Range "${res.headers.get("content-range") ?? ""}", not the range asked for.`,
        { file: uri },
      );
    }
    const length = res.headers.get("content-length");
    if (length !== null && Number(length) !== end - start + 1) {
      await res.body?.cancel().catch(() => undefined);
      throw new PmaError(
        "IO",
        `${what}: Content-Length ${length} does not match the ${end - start + 1} bytes of the range.`,
        { file: uri },
      );
    }
    const target = into ?? new Uint8Array(end - start + 1);
    if (res.body === null) throw new TransientError(`${what}: response without a body`);
    await fillFromBody(res.body, target, what, watchdog);
    return { total: range.total, etag: res.headers.get("etag") };
  } catch (e) {
    throw watchdog.wrap(e, what);
  } finally {
    watchdog.done();
  }
}
