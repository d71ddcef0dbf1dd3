/**
 * PMA-init for runs of distributed checkpoints: the merged checkpoint is written where
 * and how the run's trainer looks for its own, so it resumes from it with no conversion.
 *
 * - Megatron-LM torch_dist: `OUT/iter_XXXXXXX/` (seven digits). Megatron resumes from the
 *   iteration in `OUT/latest_checkpointed_iteration.txt`; pma writes that tracker only
 *   with `activate`, so nothing changes what a trainer loads until the user says so.
 * - torchtitan (and other `step-N/` runs): `OUT/step-N/`; torchtitan resumes from the
 *   highest step folder.
 * - OLMo-core: `OUT/stepN/model_and_optim/`, with the newest checkpoint's `train/` (the
 *   trainer state) copied beside it.
 */
import * as fs from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { StagedDir, writeFileAtomic } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { mergeDcp, type OptimizerPolicy } from "../merge/dcp-merge.js";
import type { MergeRecord } from "../merge/merger.js";
import type { AccumulatePrecision } from "../merge/kernels.js";
import type { MethodSpec } from "../merge/methods.js";
import { OLMO_CORE_SUBFOLDER } from "./dcp-run.js";

export const MEGATRON_TRACKER = "latest_checkpointed_iteration.txt";

export type DcpRunLayout = "megatron" | "olmo-core" | "step-n";

/** Which trainer's layout a run's newest distributed checkpoint is in. */
export function dcpRunLayout(checkpointPath: string): DcpRunLayout {
  const abs = resolve(checkpointPath);
  if (basename(abs) === OLMO_CORE_SUBFOLDER) return "olmo-core";
  if (/^iter_\d+$/.test(basename(abs))) return "megatron";
  return "step-n";
}

/** The folder the restart checkpoint of `step` goes to, relative to the output directory. */
export function dcpInitFolder(layout: DcpRunLayout, step: number): string {
  if (layout === "megatron") return `iter_${String(step).padStart(7, "0")}`;
  if (layout === "olmo-core") return `step${step}`;
  return `step-${step}`;
}

export interface DcpInitOptions {
  inputs: string[];
  step: number;
  outDir: string;
  method: MethodSpec;
  optimizer: OptimizerPolicy;
  accumulate?: AccumulatePrecision;
  threads?: number;
  force?: boolean;
  /** Megatron: point `latest_checkpointed_iteration.txt` at the new checkpoint. */
  activate?: boolean;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface DcpInitResult {
  checkpoint: string;
  layout: DcpRunLayout;
  merged: MergeRecord;
  copied: string[];
  activated: string | null;
}

export async function pmaInitDcp(opts: DcpInitOptions): Promise<DcpInitResult> {
  const newest = resolve(opts.inputs[opts.inputs.length - 1]!);
  const layout = dcpRunLayout(newest);
  const folder = join(resolve(opts.outDir), dcpInitFolder(layout, opts.step));
  const mergeInto = async (out: string) =>
    mergeDcp({
      inputs: opts.inputs,
      out,
      method: opts.method,
      keepOrder: true,
      optimizer: opts.optimizer,
      ...(opts.accumulate !== undefined ? { accumulate: opts.accumulate } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
      ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    });
  let merged: MergeRecord;
  const copied: string[] = [];
  if (layout === "olmo-core") {
    // The step folder appears whole: the merge and the trainer state are staged together.
    const staged = await StagedDir.create(folder, opts.force ?? false);
    try {
      merged = await mergeInto(join(staged.staging, OLMO_CORE_SUBFOLDER));
      const train = join(dirname(newest), "train");
      if (fs.existsSync(train)) {
        await fs.promises.cp(train, join(staged.staging, "train"), {
          recursive: true,
          verbatimSymlinks: true,
        });
        copied.push("train/");
      }
      await staged.publish();
    } catch (e) {
      await staged.discard();
      throw e;
    }
  } else {
    merged = await mergeInto(folder);
  }
  let activated: string | null = null;
  if (opts.activate) {
    if (layout !== "megatron") {
      throw new PmaError(
        "USAGE",
        `--activate updates Megatron-LM's ${MEGATRON_TRACKER}; this run's trainer (${layout}) resumes from the highest step folder, so nothing needs activating`,
      );
    }
    activated = join(resolve(opts.outDir), MEGATRON_TRACKER);
    // Megatron writes the bare number; so does pma.
    await writeFileAtomic(activated, String(opts.step));
  }
  return {
    checkpoint: layout === "olmo-core" ? join(folder, OLMO_CORE_SUBFOLDER) : folder,
    layout,
    merged,
    copied,
    activated,
  };
}
