/**
 * Deleting a run's old checkpoints (retention.ts decides which). A checkpoint is
 * removed in two moves: a rename to a hidden `.deleting-checkpoint-<step>` in the same
 * directory (atomic: run discovery and `pma watch` skip hidden names, so they see the
 * whole checkpoint or nothing), then a recursive delete. A crash between the two, or in
 * the middle of the delete, leaves only the hidden folder, which the next start of the
 * trainer removes; a half-deleted `checkpoint-<step>` never exists.
 *
 * Only folders holding a pma training state are candidates: whatever else a user put
 * in the run directory under a checkpoint-like name is not the trainer's to delete.
 */
import { existsSync } from "node:fs";
import { readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { fsError } from "../common/errors.js";
import { checkpointName, PMA_STATE_FILE } from "./checkpoint.js";
import { stepsToPrune, type RetentionPolicy } from "./retention.js";

export const DELETING_PREFIX = ".deleting-";

/** Steps of the pma checkpoints (`checkpoint-<step>/` with a pma state) in `runDir`. */
async function checkpointSteps(runDir: string): Promise<number[]> {
  const steps: number[] = [];
  for (const e of await readdir(runDir, { withFileTypes: true })) {
    const m = /^checkpoint-(\d+)$/.exec(e.name);
    if (e.isDirectory() && m !== null && existsSync(join(runDir, e.name, PMA_STATE_FILE)))
      steps.push(Number(m[1]));
  }
  return steps;
}

/** Removes one checkpoint folder: hidden rename first, so no reader sees it partly gone. */
async function removeCheckpoint(runDir: string, name: string): Promise<void> {
  const from = join(runDir, name);
  const hidden = join(runDir, DELETING_PREFIX + name);
  // A leftover of an earlier failed delete would make the rename fail (non-empty target).
  await rm(hidden, { recursive: true, force: true });
  await rename(from, hidden).catch((e: unknown) => {
    throw fsError(from, "rename", e);
  });
  await rm(hidden, { recursive: true, force: true }).catch((e: unknown) => {
    throw fsError(hidden, "remove", e);
  });
}

export interface Pruned {
  path: string;
  step: number;
}

/**
 * Applies `policy` to `runDir` after `newestStep`'s checkpoint was published, calling
 * `onPruned` for each checkpoint once it is deleted, oldest first. `protect`: steps
 * never deleted by this call (the checkpoint a resume started from). The policy is
 * recomputed from the directory each time, so a delete that failed is retried after
 * the next checkpoint.
 */
export async function pruneCheckpoints(
  runDir: string,
  newestStep: number,
  policy: RetentionPolicy,
  protect: ReadonlySet<number>,
  onPruned: (p: Pruned) => void,
): Promise<Pruned[]> {
  if (policy.keepLast === 0) return [];
  const pruned: Pruned[] = [];
  for (const step of stepsToPrune(await checkpointSteps(runDir), newestStep, policy, protect)) {
    const name = checkpointName(step);
    await removeCheckpoint(runDir, name);
    const p = { path: join(runDir, name), step };
    pruned.push(p);
    onPruned(p);
  }
  return pruned;
}

/**
 * Finishes deletions a crash interrupted: removes every `.deleting-*` folder of the run
 * directory. Called by a trainer that holds the run's lock, so no delete is in flight.
 */
export async function removeLeftoverDeletions(runDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const e of await readdir(runDir, { withFileTypes: true })) {
    if (!e.name.startsWith(DELETING_PREFIX)) continue;
    const path = join(runDir, e.name);
    await rm(path, { recursive: true, force: true }).catch((err: unknown) => {
      throw fsError(path, "remove", err);
    });
    removed.push(path);
  }
  return removed;
}
