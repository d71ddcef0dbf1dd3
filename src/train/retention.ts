/**
 * Which checkpoints of a run to keep: the `keep_last` newest, plus every one whose token
 * count is a multiple of `keep_every_tokens`. A run that will be merged needs both: the
 * merge of N checkpoints V tokens apart needs checkpoints on a V grid (keep_every_tokens
 * = V), and PMA-init after a loss spike needs the few checkpoints just before it
 * (keep_last). This file is the policy alone, a pure function of step numbers, so a
 * test can check it without a file system; prune.ts applies it to a run directory.
 */
import { configError } from "./config-reader.js";
import type { CheckpointSection } from "./config.js";

export interface RetentionPolicy {
  /** The N newest checkpoints are kept; 0: every checkpoint is (no pruning at all). */
  keepLast: number;
  /** Checkpoints at multiples of this many tokens are kept too; 0: none. */
  keepEveryTokens: number;
  /** A checkpoint's token count is its step times this (the data section cannot change on resume). */
  tokensPerStep: number;
}

/**
 * Refuses retention settings that cannot mean what they say; `spacingTokens` is the
 * distance between checkpoints after every_tokens is rounded to whole steps.
 */
export function checkRetention(where: string, c: CheckpointSection, spacingTokens: number): void {
  if (c.keep_every_tokens === 0) return;
  if (c.keep_last === 0) {
    // keep_last 0 keeps everything, so keep_every_tokens alone would silently do nothing.
    throw configError(
      where,
      "checkpointing.keep_every_tokens",
      `needs checkpointing.keep_last >= 1 (keep_last 0 keeps every checkpoint), got ${c.keep_every_tokens}`,
    );
  }
  if (spacingTokens === 0) {
    throw configError(
      where,
      "checkpointing.keep_every_tokens",
      `needs checkpointing.every_tokens > 0 (with 0 there is only the final checkpoint), got ${c.keep_every_tokens}`,
    );
  }
  if (c.keep_every_tokens % spacingTokens !== 0) {
    // Otherwise the grid it names would fall between checkpoints and keep fewer than asked for.
    throw configError(
      where,
      "checkpointing.keep_every_tokens",
      `must be a multiple of the checkpoint spacing, ${spacingTokens} tokens (checkpointing.every_tokens rounded to whole steps), got ${c.keep_every_tokens}`,
    );
  }
}

/**
 * Steps of `steps` (the run's checkpoints) to delete now that `newest` is published.
 * Never the newest, never one in `protectedSteps`, and never one after `newest`: those
 * belong to a continuation a resume from an earlier checkpoint abandoned, and they are
 * replaced as the run reaches their steps, not counted as newer than it.
 */
export function stepsToPrune(
  steps: readonly number[],
  newest: number,
  policy: RetentionPolicy,
  protectedSteps: ReadonlySet<number> = new Set(),
): number[] {
  if (policy.keepLast === 0) return [];
  const upToNewest = [...new Set(steps)].filter((s) => s <= newest).sort((a, b) => b - a);
  if (!upToNewest.includes(newest)) upToNewest.unshift(newest);
  const keep = new Set(upToNewest.slice(0, policy.keepLast));
  keep.add(newest);
  for (const s of protectedSteps) keep.add(s);
  const onGrid = (s: number): boolean =>
    policy.keepEveryTokens > 0 && (s * policy.tokensPerStep) % policy.keepEveryTokens === 0;
  return upToNewest.filter((s) => !keep.has(s) && !onGrid(s)).sort((a, b) => a - b);
}
