import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fsError, PmaError } from "./errors.js";
import { exists } from "./exists.js";
import { acquireLock, type Lock } from "./lock.js";

/**
 * The lock on `abs` (one writer at a time), with what an abandoned writer left recovered,
 * and an existing `abs` refused unless `force`; the lock is released when that throws.
 */
async function lockTarget(abs: string, force: boolean): Promise<Lock> {
  const lock = await acquireLock(join(dirname(abs), `.${basename(abs)}.pma-lock`), `writing ${abs}`);
  try {
    await recoverAbandoned(abs);
    if (!force && (await exists(abs))) {
      throw new PmaError(
        "EXISTS",
        `${abs} already exists; choose another --out or pass --force to replace it`,
        {
          file: abs,
        },
      );
    }
    return lock;
  } catch (e) {
    await lock.release();
    throw e;
  }
}

/**
 * An output directory that appears complete or not at all. Everything is written into
 * a hidden sibling (same filesystem, so the final rename is atomic), fsynced, and only
 * then renamed to the requested name. On failure or interruption the sibling is
 * removed; the requested path is never half-written.
 *
 * One process at a time writes a target: a lock file beside it (`.<name>.pma-lock`)
 * is held from create to publish or discard. Holding it, create also clears what a
 * process killed outright (SIGKILL, power loss) left behind: its staging directory is
 * removed, and a previous output it had moved aside to replace, but not yet replaced,
 * is moved back.
 */
export class StagedDir {
  readonly target: string;
  readonly staging: string;
  private done = false;

  private constructor(
    target: string,
    staging: string,
    private readonly lock: Lock,
    /** False for an adopted directory: others' work, kept when this process gives up. */
    private readonly removeOnDiscard = true,
  ) {
    this.target = target;
    this.staging = staging;
    LIVE.add(this);
  }

  /** Refuses an existing target unless `force`, and a target another process is writing; creates the staging directory. */
  static async create(target: string, force: boolean): Promise<StagedDir> {
    const abs = resolve(target);
    const parent = dirname(abs);
    try {
      await fs.promises.mkdir(parent, { recursive: true });
    } catch (e) {
      throw new PmaError("IO", `cannot create ${parent}: ${(e as Error).message}`, {
        file: parent,
        cause: e,
      });
    }
    const lock = await lockTarget(abs, force);
    try {
      const staging = join(parent, `.${basename(abs)}${TMP}${process.pid}-${randomBytes(4).toString("hex")}`);
      await fs.promises.mkdir(staging).catch((e: unknown) => {
        throw fsError(staging, "mkdir", e);
      });
      return new StagedDir(abs, staging, lock);
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  /**
   * Takes a directory staged by other means (the parts of a partitioned merge write it
   * together) as the staging of `target`: the same lock, recovery and refusal as
   * `create`, but a discard leaves the directory in place, since it holds others' work.
   */
  static async adopt(target: string, staging: string, force: boolean): Promise<StagedDir> {
    const abs = resolve(target);
    return new StagedDir(abs, resolve(staging), await lockTarget(abs, force), false);
  }

  /**
   * Moves the staged directory into place. An existing target (allowed by `force`) is
   * first moved aside and deleted only after the new one is in place.
   */
  async publish(): Promise<void> {
    await fsyncPath(this.staging).catch((e: unknown) => {
      throw e instanceof PmaError ? e : fsError(this.staging, "fsync", e);
    });
    const parent = dirname(this.target);
    let old: string | null = null;
    if (await exists(this.target)) {
      old = join(parent, `.${basename(this.target)}${OLD}${process.pid}-${randomBytes(4).toString("hex")}`);
      await fs.promises.rename(this.target, old);
    }
    try {
      await fs.promises.rename(this.staging, this.target);
    } catch (e) {
      if (old !== null) await fs.promises.rename(old, this.target).catch(() => undefined);
      throw new PmaError(
        "IO",
        `cannot move the finished output into ${this.target}: ${(e as Error).message}`,
        { file: this.target, cause: e },
      );
    }
    this.done = true;
    LIVE.delete(this);
    try {
      await fsyncPath(parent);
      if (old !== null) await fs.promises.rm(old, { recursive: true, force: true });
    } finally {
      await this.lock.release();
    }
  }

  /** Removes the staging directory; safe to call more than once. */
  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    LIVE.delete(this);
    try {
      if (this.removeOnDiscard) await fs.promises.rm(this.staging, { recursive: true, force: true });
    } finally {
      await this.lock.release();
    }
  }

  discardSync(): void {
    if (this.done) return;
    this.done = true;
    LIVE.delete(this);
    try {
      if (this.removeOnDiscard) fs.rmSync(this.staging, { recursive: true, force: true });
    } finally {
      this.lock.releaseSync();
    }
  }
}

/** Infixes of the hidden siblings: a staging directory, and a previous output moved aside. */
const TMP = ".pma-tmp-";
const OLD = ".pma-old-";

/**
 * Cleans up after a writer of `target` that died without cleaning up (the caller holds
 * the target's lock, so no live writer owns these). A previous output moved aside is
 * complete (it was the published output): when the target is missing, the newest one
 * goes back into place; staging directories, never published, are removed.
 */
export async function recoverAbandoned(target: string): Promise<void> {
  const parent = dirname(target);
  const prefix = `.${basename(target)}`;
  const names = (await fs.promises.readdir(parent)).filter(
    (n) => n.startsWith(prefix + TMP) || n.startsWith(prefix + OLD),
  );
  const olds: { path: string; mtime: number }[] = [];
  for (const n of names) {
    const p = join(parent, n);
    if (n.startsWith(prefix + TMP)) await fs.promises.rm(p, { recursive: true, force: true });
    else olds.push({ path: p, mtime: (await fs.promises.lstat(p)).mtimeMs });
  }
  olds.sort((a, b) => b.mtime - a.mtime);
  if (olds.length > 0 && !(await exists(target))) {
    await fs.promises.rename(olds.shift()!.path, target);
    await fsyncPath(parent);
  }
  for (const o of olds) await fs.promises.rm(o.path, { recursive: true, force: true });
}

/** Staging directories of this process, removed if it exits before publishing them. */
const LIVE = new Set<StagedDir>();
process.on("exit", () => {
  for (const s of [...LIVE]) s.discardSync();
});

/**
 * A unique temporary name beside `path`, on the same filesystem so the rename is atomic,
 * and hidden, so that a reader listing the folder (events.out.tfevents.*) never takes it.
 */
function tempSibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.pma-tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/** Writes a small file atomically: temporary sibling, fsync, rename. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempSibling(path);
  try {
    const fh = await fs.promises.open(tmp, "w");
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, path);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw fsError(path, "write", e);
  }
}

/**
 * writeFileAtomic for callers that cannot await (the trainer's log and the tokenizer
 * cache): a crash or a concurrent reader never sees a half-written file under the name.
 */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  const tmp = tempSibling(path);
  try {
    const fd = fs.openSync(tmp, "w");
    try {
      const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
      let off = 0;
      while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw fsError(path, "write", e);
  }
}

/** fsyncs a file or a folder (a folder's fsync makes the names created in it durable). */
export async function fsyncPath(p: string): Promise<void> {
  const fh = await fs.promises.open(p, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
