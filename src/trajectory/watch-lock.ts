import { open, readFile, rm } from "node:fs/promises";
import { PmaError } from "../common/errors.js";

/**
 * One watcher per output directory: two would replace each other's merges and write
 * the journal twice. The lock file holds the owner's pid; a lock whose process is gone
 * (a watcher that was killed) is taken over.
 */
export async function acquireLock(path: string): Promise<{ release(): Promise<void> }> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, "wx");
      try {
        await fh.write(`${process.pid}\n`);
      } finally {
        await fh.close();
      }
      return { release: () => rm(path, { force: true }) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new PmaError("IO", `${path}: cannot create the lock (${(e as Error).message})`, { file: path, cause: e });
    }
    const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
    if (Number.isInteger(pid) && pid > 0 && (pid === process.pid || alive(pid))) {
      throw new PmaError("LOCKED", `${path}: another pma watch (pid ${pid}) is writing to this directory; stop it or choose another --out`, { file: path });
    }
    await rm(path, { force: true });
  }
  throw new PmaError("LOCKED", `${path}: could not take the lock (another watcher is starting?)`, { file: path });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
