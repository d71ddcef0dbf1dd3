import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { PmaError } from "./errors.js";

/**
 * An output directory that appears complete or not at all. Everything is written into
 * a hidden sibling (same filesystem, so the final rename is atomic), fsynced, and only
 * then renamed to the requested name. On failure or interruption the sibling is
 * removed; the requested path is never half-written.
 */
export class StagedDir {
  readonly target: string;
  readonly staging: string;
  private done = false;

  private constructor(target: string, staging: string) {
    this.target = target;
    this.staging = staging;
    LIVE.add(this);
  }

  /** Refuses an existing target unless `force`; creates the staging directory. */
  static async create(target: string, force: boolean): Promise<StagedDir> {
    const abs = resolve(target);
    if (!force && (await exists(abs))) {
      throw new PmaError("EXISTS", `${abs} already exists; choose another --out or pass --force to replace it`, { file: abs });
    }
    const parent = dirname(abs);
    try {
      await fs.promises.mkdir(parent, { recursive: true });
    } catch (e) {
      throw new PmaError("IO", `cannot create ${parent}: ${(e as Error).message}`, { file: parent, cause: e });
    }
    const staging = join(parent, `.${basename(abs)}.pma-tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
    await fs.promises.mkdir(staging);
    return new StagedDir(abs, staging);
  }

  /**
   * Moves the staged directory into place. An existing target (allowed by `force`) is
   * first moved aside and deleted only after the new one is in place.
   */
  async publish(): Promise<void> {
    await fsyncPath(this.staging);
    const parent = dirname(this.target);
    let old: string | null = null;
    if (await exists(this.target)) {
      old = join(parent, `.${basename(this.target)}.pma-old-${process.pid}-${randomBytes(4).toString("hex")}`);
      await fs.promises.rename(this.target, old);
    }
    try {
      await fs.promises.rename(this.staging, this.target);
    } catch (e) {
      if (old !== null) await fs.promises.rename(old, this.target).catch(() => undefined);
      throw new PmaError("IO", `cannot move the finished output into ${this.target}: ${(e as Error).message}`, { file: this.target, cause: e });
    }
    this.done = true;
    LIVE.delete(this);
    await fsyncPath(parent);
    if (old !== null) await fs.promises.rm(old, { recursive: true, force: true });
  }

  /** Removes the staging directory; safe to call more than once. */
  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    LIVE.delete(this);
    await fs.promises.rm(this.staging, { recursive: true, force: true });
  }

  discardSync(): void {
    if (this.done) return;
    this.done = true;
    LIVE.delete(this);
    fs.rmSync(this.staging, { recursive: true, force: true });
  }
}

/** Staging directories of this process, removed if it exits before publishing them. */
const LIVE = new Set<StagedDir>();
process.on("exit", () => {
  for (const s of [...LIVE]) s.discardSync();
});

/** Writes a small file atomically: temporary sibling, fsync, rename. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.pma-tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const fh = await fs.promises.open(tmp, "w");
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fs.promises.rename(tmp, path);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.promises.lstat(p);
    return true;
  } catch {
    return false;
  }
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await fs.promises.open(p, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
