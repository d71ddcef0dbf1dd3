import { PmaError } from "../common/errors.js";
import { idleTimeoutMs, TransientError } from "./retry.js";

/**
 * A watchdog for one request: aborts it when no byte arrived for the idle timeout, so a
 * stalled server becomes a retried timeout instead of a merge that hangs forever.
 * `signal` goes to fetch / the SDK; call `touch()` on progress and `done()` at the end.
 */
export class IdleWatchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  stalled = false;

  constructor(
    private readonly ms = idleTimeoutMs(),
    outer?: AbortSignal,
  ) {
    if (outer) {
      if (outer.aborted) this.controller.abort();
      else outer.addEventListener("abort", () => this.controller.abort(), { once: true });
    }
    this.touch();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.stalled = true;
      this.controller.abort();
    }, this.ms);
  }

  done(): void {
    clearTimeout(this.timer);
  }

  /** The error to throw after an abort: a transient stall, or the caller's own abort as is. */
  wrap(e: unknown, what: string): unknown {
    return this.stalled
      ? new TransientError(`${what}: no data for ${this.ms / 1000} s (stalled connection)`)
      : e;
  }
}

/**
 * Copies a response body into `into`, which must end up exactly full: a body that ends
 * early is a truncated transfer (retried), one that runs long is not the range asked
 * for (an error). Nothing beyond `into` is ever held.
 */
export async function fillFromBody(
  body: AsyncIterable<Uint8Array>,
  into: Uint8Array,
  what: string,
  watchdog: IdleWatchdog,
): Promise<void> {
  let filled = 0;
  for await (const chunk of body) {
    watchdog.touch();
    if (filled + chunk.length > into.length) {
      throw new PmaError(
        "IO",
        `${what}: the server sent more than the ${into.length} bytes asked for; it does not honour byte ranges correctly`,
      );
    }
    into.set(chunk, filled);
    filled += chunk.length;
  }
  if (filled !== into.length)
    throw new TransientError(
      `${what}: body ended after ${filled} of ${into.length} bytes (truncated transfer)`,
    );
}
