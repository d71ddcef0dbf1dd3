/**
 * The lab's working directory. Everything in it is addressed by content: a run's folder
 * name carries the hash of its full specification (config, where it starts from), a
 * merge's the hash of its inputs and method, an evaluation's cache key the path of what
 * was scored and how. So a rerun finds what it can reuse without bookkeeping, a changed
 * setting gets new folders, and `--fresh` only has to ignore (and replace) what is there.
 *
 *   DIR/runs/<name>-<hash>/      pma training runs (+ lab-run.json once complete)
 *   DIR/merges/<hash>/           pma merge outputs
 *   DIR/evals.json               held-out scores by key
 *   DIR/results/<experiment>.json  an experiment's result and the key it was computed for
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { writeFileAtomic } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";

/** Bump when a change to the experiments' code changes their results (runs are kept). */
export const LAB_VERSION = 8;

/** Bump when a change to how runs are trained changes them (every run is retrained). */
export const RUNS_VERSION = 1;

export function hashOf(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("hex").slice(0, 12);
}

export class LabStore {
  readonly dir: string;
  private evals: Record<string, unknown> = {};
  private evalsDirty = false;
  private evalsWrite: Promise<void> = Promise.resolve();

  constructor(
    dir: string,
    readonly fresh: boolean,
  ) {
    this.dir = resolve(dir);
    for (const sub of ["runs", "merges", "results", "sft", "restarts"])
      mkdirSync(join(this.dir, sub), { recursive: true });
    const file = join(this.dir, "evals.json");
    if (!fresh && existsSync(file)) {
      try {
        this.evals = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
      } catch {
        this.evals = {}; // a damaged cache is recomputed, not fatal
      }
    }
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  /** A path relative to the lab dir, for cache keys that survive moving the folder. */
  rel(path: string): string {
    return relative(this.dir, resolve(path));
  }

  cachedEval<T>(key: string): T | undefined {
    return this.evals[key] as T | undefined;
  }

  async putEval(key: string, value: unknown): Promise<void> {
    this.evals[key] = value;
    this.evalsDirty = true;
    // Writes are chained so two quick updates never interleave on disk.
    this.evalsWrite = this.evalsWrite.then(async () => {
      if (!this.evalsDirty) return;
      this.evalsDirty = false;
      await writeFileAtomic(join(this.dir, "evals.json"), JSON.stringify(this.evals) + "\n");
    });
    await this.evalsWrite;
  }

  readResult<T>(experiment: string, key: string): T | undefined {
    if (this.fresh) return undefined;
    const file = join(this.dir, "results", `${experiment}.json`);
    if (!existsSync(file)) return undefined;
    try {
      const r = JSON.parse(readFileSync(file, "utf8")) as { key: string; result: T };
      return r.key === key ? r.result : undefined;
    } catch {
      return undefined;
    }
  }

  async writeResult(experiment: string, key: string, result: unknown): Promise<void> {
    await writeFileAtomic(
      join(this.dir, "results", `${experiment}.json`),
      JSON.stringify({ key, result }, null, 1) + "\n",
    );
  }
}

export function requireInside(store: LabStore, path: string): void {
  if (relative(store.dir, resolve(path)).startsWith(".."))
    throw new PmaError("INTERNAL", `${path} is outside the lab directory ${store.dir}`);
}
