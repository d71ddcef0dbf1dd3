import * as fs from "node:fs";
import { promisify } from "node:util";
import { fsError, PmaError } from "../common/errors.js";

const fdatasync = promisify(fs.fdatasync);

/**
 * Write-behind for the merge's output: while workers compute, the kernel holds their
 * bytes as dirty pages and would write nothing until the final fsync, which then waits
 * for the whole output. Starting a data sync each time another `everyBytes` have been
 * written keeps the disk busy alongside the arithmetic, so only the tail is left for the
 * end. Runs on the libuv thread pool, one round at a time; workers never wait for it.
 * Durability still comes from the writer's own fsync at the end: this only moves work
 * earlier. A failed sync is kept and thrown by `close`, never ignored.
 */
export class WriteBehind {
  private readonly fds: { fd: number; path: string }[] = [];
  private synced = 0;
  private inFlight: Promise<void> | null = null;
  private failure: PmaError | null = null;

  constructor(
    files: readonly string[],
    private readonly everyBytes: number,
  ) {
    try {
      // fdatasync flushes the file, whichever descriptor asks: a read-only one will do.
      for (const path of files) this.fds.push({ fd: fs.openSync(path, "r"), path });
    } catch (e) {
      this.closeFds();
      throw fsError(files[this.fds.length] ?? "", "open", e);
    }
  }

  /** Told the output bytes written so far; starts a sync round when enough are new. */
  poll(written: number): void {
    if (this.inFlight !== null || this.failure !== null || written - this.synced < this.everyBytes) return;
    this.synced = written;
    this.inFlight = this.syncAll().finally(() => {
      this.inFlight = null;
    });
  }

  private async syncAll(): Promise<void> {
    for (const { fd, path } of this.fds) {
      try {
        await fdatasync(fd);
      } catch (e) {
        this.failure ??= fsError(path, "sync", e);
      }
    }
  }

  /** Waits for the round in flight, closes, and throws the first sync failure, if any. */
  async close(): Promise<void> {
    if (this.inFlight !== null) await this.inFlight;
    this.closeFds();
    if (this.failure !== null) throw this.failure;
  }

  private closeFds(): void {
    for (const { fd } of this.fds.splice(0)) fs.closeSync(fd);
  }
}
