import { setTimeout as sleep } from "node:timers/promises";
import { PmaError } from "../common/errors.js";

/**
 * Retries for remote reads and uploads. Object stores and CDNs fail transiently all
 * the time at terabyte scale (a reset connection, a 503 while a node restarts, a 429
 * asking to slow down), so one failed request must not end a multi-hour merge; but a
 * wrong answer (404, 403, a changed object) is final at once.
 */

/** A failure worth another attempt; `afterMs` is the server's Retry-After, if any. */
export class TransientError extends Error {
  constructor(
    message: string,
    readonly afterMs?: number,
  ) {
    super(message);
    this.name = "TransientError";
  }
}

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

/** Defaults: 8 attempts, 0.25 s doubling to at most 20 s (about 1.5 minutes of trying). PMA_IO_RETRIES overrides the count. */
export function defaultRetryPolicy(): RetryPolicy {
  const fromEnv = Number(process.env["PMA_IO_RETRIES"]);
  return { attempts: Number.isInteger(fromEnv) && fromEnv >= 1 ? fromEnv : 8, baseMs: 250, maxMs: 20_000 };
}

/** Longest wait pma honours from a Retry-After header; a larger value is capped, not obeyed blindly. */
const MAX_RETRY_AFTER_MS = 120_000;

/** Retry-After as milliseconds: delta-seconds or an HTTP date (RFC 9110 10.2.3). */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value == null || value.trim() === "") return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS);
}

const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CLOSED",
]);

/** Network-level failures (as Node, undici and the AWS SDK surface them) that a new connection may cure. */
export function isTransientNetworkError(e: unknown): boolean {
  for (
    let c: unknown = e, depth = 0;
    c instanceof Error && depth < 5;
    c = (c as { cause?: unknown }).cause, depth++
  ) {
    const code = (c as NodeJS.ErrnoException).code;
    if (code !== undefined && TRANSIENT_CODES.has(code)) return true;
    if (c.name === "TimeoutError" || c.name === "TransientError") return true;
    if (
      c.message === "fetch failed" ||
      /socket hang up|other side closed|premature close|aborted/i.test(c.message)
    )
      return true;
  }
  return false;
}

/**
 * Runs `attempt` until it succeeds, fails with a non-transient error, or the policy's
 * attempts are spent. Waits grow exponentially with full jitter (so many workers that
 * failed together do not retry together), or follow Retry-After when the server sent one.
 */
export async function withRetries<T>(
  what: string,
  attempt: (n: number) => Promise<T>,
  policy = defaultRetryPolicy(),
  signal?: AbortSignal,
): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (e) {
      if (e instanceof PmaError || !(e instanceof TransientError || isTransientNetworkError(e))) throw e;
      if (signal?.aborted) throw new PmaError("INTERRUPTED", `${what}: interrupted`);
      if (n >= policy.attempts) {
        throw new PmaError(
          "IO",
          `${what}: failed ${n} times, last with: ${(e as Error).message}; the server or network is unavailable, try again later`,
          { cause: e },
        );
      }
      const backoff = Math.random() * Math.min(policy.maxMs, policy.baseMs * 2 ** (n - 1));
      const wait = e instanceof TransientError && e.afterMs !== undefined ? e.afterMs : backoff;
      await sleep(wait, undefined, signal ? { signal } : undefined).catch(() => undefined);
    }
  }
}

/** Milliseconds a request may go without receiving a byte before it counts as stalled. PMA_IO_TIMEOUT (seconds) overrides. */
export function idleTimeoutMs(): number {
  const s = Number(process.env["PMA_IO_TIMEOUT"]);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 60_000;
}
