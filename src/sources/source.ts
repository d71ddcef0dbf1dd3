/**
 * Where checkpoint bytes live. Every tensor reader (safetensors, GGUF, torch) reads
 * through one small interface, so a checkpoint on local disk, behind an HTTP(S) URL,
 * in an S3-compatible store or on the Hugging Face Hub is read the same way: by
 * absolute position, only the bytes a reader asks for, never the whole file at once.
 *
 *   interface PositionalSource {
 *     uri: string;        // for messages and records; never holds a credential
 *     size: number;       // bytes, fixed when the source was opened
 *     ref: SourceRef;     // plain data: another thread reopens the same bytes with openSource(ref)
 *     read(into, position, signal?): Promise<void>;  // fills `into` exactly, or throws a PmaError
 *     readSync?(into, position): void;               // local files only
 *     close(): Promise<void>;
 *   }
 *
 * The contract every implementation keeps:
 * - `read` fills exactly `into.length` bytes from `position`, or throws; a short,
 *   long or mislabelled response is never returned as data.
 * - The bytes are those of the object as it was when opened: a remote source pins an
 *   identity (ETag, commit, size) at open and fails with SOURCE_CHANGED, not retries,
 *   when a later response belongs to another version, so a merge never mixes two.
 * - Transient failures (connection resets, timeouts, stalled bodies, 5xx, 429 with
 *   Retry-After) are retried with exponential backoff and jitter inside `read`.
 * - No secret ends up in `uri`, `ref` or an error message: credentials come from the
 *   environment (HF_TOKEN, the AWS SDK's chain) in whichever thread opens the source.
 */
export interface PositionalSource {
  readonly uri: string;
  readonly size: number;
  readonly ref: SourceRef;
  read(into: Uint8Array, position: number, signal?: AbortSignal): Promise<void>;
  readSync?(into: Uint8Array, position: number): void;
  close(): Promise<void>;
}

/**
 * A source as plain, structured-cloneable data: enough to reopen exactly the same bytes
 * (in a worker thread, say) without listing or resolving anything again.
 */
export type SourceRef =
  | { kind: "file"; path: string }
  | { kind: "http"; url: string; size: number; etag: string | null; auth: "hf" | null }
  | { kind: "s3"; bucket: string; key: string; size: number; etag: string | null };

/** Checks that [position, position + length) lies inside a source of `size` bytes. */
export function checkRange(uri: string, size: number, position: number, length: number): void {
  if (!Number.isSafeInteger(position) || position < 0 || position + length > size) {
    throw new RangeError(`${uri}: read of ${length} bytes at ${position} is outside the ${size}-byte object`);
  }
}

/** ETags compare without quotes or a weak marker: servers differ in how they print them. */
export function sameEtag(a: string | null | undefined, b: string | null | undefined): boolean {
  if (a == null || b == null) return true;
  const norm = (s: string) => s.replace(/^W\//, "").replace(/"/g, "");
  return norm(a) === norm(b);
}
