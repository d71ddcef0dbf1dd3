import type { ServerResponse } from "node:http";

/**
 * Faults a test server injects into its next ranged GETs, one fault per request:
 * - reset: half the body, then the TCP connection is reset
 * - truncate: half the body, then the connection is closed cleanly (short body)
 * - stall: half the body, then nothing until the client gives up
 * - 503: HTTP 503 with Retry-After: 1
 */
export type FaultKind = "reset" | "truncate" | "stall" | "503";

export class FaultQueue {
  private readonly queue: FaultKind[] = [];
  /** Faults actually injected, in order. */
  readonly injected: FaultKind[] = [];

  push(...faults: FaultKind[]): void {
    this.queue.push(...faults);
  }

  take(): FaultKind | undefined {
    const f = this.queue.shift();
    if (f !== undefined) this.injected.push(f);
    return f;
  }

  get pending(): number {
    return this.queue.length;
  }
}

/** Sends `body` as the answer to a ranged GET, with `fault` applied. */
export function sendWithFault(
  res: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: Buffer,
  fault: FaultKind | undefined,
): void {
  if (fault === "503") {
    res.writeHead(503, { "Retry-After": "1", "Content-Length": "0" });
    res.end();
    return;
  }
  res.writeHead(status, { ...headers, "Content-Length": String(body.length) });
  if (fault === undefined) {
    res.end(body);
    return;
  }
  res.write(body.subarray(0, Math.floor(body.length / 2)));
  const socket = res.socket!;
  if (fault === "reset") setTimeout(() => socket.resetAndDestroy(), 20);
  else if (fault === "truncate") setTimeout(() => socket.end(), 20);
  // "stall": keep the socket open and silent; the client's idle timeout must fire.
}
