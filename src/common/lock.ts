import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { hostname } from "node:os";
import { PmaError } from "./errors.js";

/**
 * One writer per output: a lock file created atomically beside (or inside) what is
 * written. It names its owner (host, pid, the process's start time, the command), so a
 * second pma process is refused with a message saying who holds it, and a lock left by
 * a process that died without releasing it (SIGKILL, power loss) is recognised as stale
 * and taken over: same host, and that pid is gone, a zombie, or a different process
 * that reused the number (its start time differs).
 *
 * The file is written under a temporary name and hard-linked into place, so a lock is
 * never seen half-written. Taking over a stale lock renames it away first and checks
 * that what was renamed is the stale lock that was judged, so two processes that both
 * find it stale cannot both end up holding it.
 */
export interface Lock {
  readonly path: string;
  release(): Promise<void>;
  releaseSync(): void;
}

interface Owner {
  host: string;
  pid: number;
  /** Process start time in clock ticks since boot (Linux), to tell a reused pid apart. */
  start: string | null;
  command: string;
  since: string;
  token: string;
}

/** Start time of a process from /proc/<pid>/stat (field 22), and whether it is a zombie. */
function procStat(pid: number): { start: string; zombie: boolean } | null | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    // No /proc (not Linux): unknown. /proc without this pid: gone.
    return fs.existsSync("/proc/self/stat") ? null : undefined;
  }
  // The command name may hold spaces and parentheses: fields start after the last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { start: fields[19] ?? "", zombie: fields[0] === "Z" || fields[0] === "X" };
}

/** Whether the owner recorded in a lock is still running (on this host). */
function alive(owner: Owner): boolean {
  const stat = procStat(owner.pid);
  if (stat === null) return false;
  if (stat !== undefined) return !stat.zombie && (owner.start === null || stat.start === owner.start);
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to another user.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function parseOwner(text: string): Owner | null {
  try {
    const o = JSON.parse(text) as Partial<Owner> | null;
    if (
      o === null ||
      typeof o !== "object" ||
      typeof o.pid !== "number" ||
      typeof o.host !== "string" ||
      typeof o.token !== "string"
    )
      return null;
    return {
      host: o.host,
      pid: o.pid,
      start: typeof o.start === "string" ? o.start : null,
      command: String(o.command ?? ""),
      since: String(o.since ?? ""),
      token: o.token,
    };
  } catch {
    return null;
  }
}

const HELD = new Map<string, string>();
process.on("exit", () => {
  for (const [path, token] of HELD) removeIfOurs(path, token);
});

function removeIfOurs(path: string, token: string): void {
  HELD.delete(path);
  try {
    if (parseOwner(fs.readFileSync(path, "utf8"))?.token === token) fs.rmSync(path, { force: true });
  } catch {
    // Already gone.
  }
}

/** A lock whose owner file cannot be read is left alone this long: its writer may be between create and link. */
const UNREADABLE_GRACE_MS = 10_000;

/**
 * Takes the lock at `path` for `what` (e.g. "writing /runs/merged"), or throws LOCKED
 * naming the holder and what to do.
 */
export async function acquireLock(path: string, what: string): Promise<Lock> {
  const me: Owner = {
    host: hostname(),
    pid: process.pid,
    start: procStat(process.pid)?.start ?? null,
    command: process.argv.slice(1).join(" ").slice(0, 300),
    since: new Date().toISOString(),
    token: randomBytes(8).toString("hex"),
  };
  const text = JSON.stringify(me) + "\n";
  for (let attempt = 0; attempt < 5; attempt++) {
    const tmp = tmpName(path, me);
    try {
      fs.writeFileSync(tmp, text, { flag: "wx" });
      try {
        fs.linkSync(tmp, path);
        HELD.set(path, me.token);
        return {
          path,
          release: async () => removeIfOurs(path, me.token),
          releaseSync: () => removeIfOurs(path, me.token),
        };
      } finally {
        fs.rmSync(tmp, { force: true });
      }
    } catch (e) {
      if (e instanceof PmaError) throw e;
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new PmaError("IO", `${path}: cannot create the lock file (${(e as Error).message})`, {
          file: path,
          cause: e,
        });
      }
    }
    let held: string;
    let mtime: number;
    try {
      held = fs.readFileSync(path, "utf8");
      mtime = fs.statSync(path).mtimeMs;
    } catch {
      continue; // Released meanwhile: try again.
    }
    const owner = parseOwner(held);
    if (owner === null) {
      if (Date.now() - mtime < UNREADABLE_GRACE_MS) throw locked(path, what, null);
    } else if (owner.host !== me.host || alive(owner)) {
      throw locked(path, what, owner);
    }
    breakStale(path, held);
    // A writer killed between linking its lock and removing the temporary name leaves
    // that name behind; its owner is dead now, so its leftover goes with the lock.
    // (The token comes from a file: only a name of our own making is removed.)
    if (owner !== null && /^[0-9a-f]{16}$/.test(owner.token))
      fs.rmSync(tmpName(path, owner), { force: true });
  }
  throw new PmaError(
    "LOCKED",
    `${path}: could not take the lock for ${what}; other pma processes keep taking it`,
    { file: path },
  );
}

/** Where `owner` writes its lock before linking it into place. */
function tmpName(path: string, owner: Pick<Owner, "pid" | "token">): string {
  return `${path}.${owner.pid}-${owner.token}.tmp`;
}

/** Moves a stale lock away, putting it back if what was moved turned out to be a fresh one. */
function breakStale(path: string, judged: string): void {
  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    fs.renameSync(path, aside);
  } catch {
    return; // Someone else broke it first.
  }
  if (fs.readFileSync(aside, "utf8") !== judged) {
    // Another process replaced the stale lock between our read and our rename.
    try {
      fs.linkSync(aside, path);
    } catch {
      // A third one took the lock meanwhile: theirs stands; ours goes.
    }
  }
  fs.rmSync(aside, { force: true });
}

function locked(path: string, what: string, owner: Owner | null): PmaError {
  if (owner === null) {
    return new PmaError(
      "LOCKED",
      `${path}: another pma process is ${what} (its lock file is being written); wait for it, or remove the lock file if none is running`,
      { file: path },
    );
  }
  const who = `pma (pid ${owner.pid} on ${owner.host}, since ${owner.since}${owner.command ? `: ${owner.command}` : ""})`;
  const remote =
    owner.host !== hostname()
      ? `; it runs on another machine, so pma cannot tell whether it is still running: remove ${path} if it is not`
      : "";
  return new PmaError(
    "LOCKED",
    `${path}: another ${who} is ${what}; wait for it to finish or choose another output${remote}`,
    { file: path },
  );
}
