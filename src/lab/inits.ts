/**
 * The two starting points of the downstream experiments (paper section 4.4): the latest
 * checkpoint of the dense pre-training run ("baseline") and the merge of the last N
 * checkpoints ending there ("PMA-init"). Both are weights-only folders written by pma
 * merge (the baseline as a merge of one checkpoint, an exact copy), so both arms start
 * the same way: a fresh AdamW, step 0, the downstream stage's own schedule.
 */
import type { LabContext } from "./context.js";
import { checkpointDir, denseSpec } from "./runs.js";

export interface DownstreamInits {
  latest: string;
  merged: string;
  /** Pre-training steps merged (oldest first). */
  mergedSteps: number[];
  endStep: number;
}

export async function downstreamInits(ctx: LabContext): Promise<DownstreamInits> {
  const p = ctx.profile;
  const dir = await ctx.runs.ensure(denseSpec(p));
  const w = await ctx.window(dir, p.denseSteps, p.window.count, p.window.intervalSteps);
  return {
    latest: await ctx.merged([checkpointDir(dir, p.denseSteps)]),
    merged: await ctx.merged(w.inputs),
    mergedSteps: w.steps,
    endStep: p.denseSteps,
  };
}

export const INIT_NAMES = { latest: "baseline", merged: "PMA-init" } as const;
