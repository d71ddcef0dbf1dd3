/**
 * PMA-init (paper section 4.5): when a run hits a loss spike it does not recover from,
 * merge the checkpoints saved before the spike and resume training from the merge.
 *
 * The output is a training checkpoint, not just weights: `OUT/checkpoint-<S>/` holds
 * the merged weights plus the trainer state of the latest healthy checkpoint S (its
 * step, scheduler, RNG and data position, and, with `optimizer: "latest"`, its
 * optimizer moments), so the trainer resumes at step S with the merged weights.
 */
import { access, open, readdir, rename, rmdir } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { StagedDir, writeFileAtomic } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { PMA_VERSION } from "../common/version.js";
import { merge, type MergeOptions, type MergeRecord } from "../merge/merger.js";
import { DEFAULT_METHOD, type MethodSpec } from "../merge/methods.js";
import {
  DEFAULT_INIT_COUNT,
  DEFAULT_INIT_MARGIN,
  selectInitCheckpoints,
  type InitReason,
} from "./init-select.js";
import { readTrainingLog, type TrainingLog } from "./logs.js";
import { logPrefix, pmaStateFiles, writePmaResumeState } from "./pma-train-state.js";
import { copyResumeFiles, planResumeFiles, type OptimizerChoice } from "./resume-files.js";
import { discoverRun, type DiscoverOptions, type RunScan } from "./run.js";
import { dcpInitFolder, dcpRunLayout, MEGATRON_TRACKER, pmaInitDcp, type DcpRunLayout } from "./init-dcp.js";
import { isDcpFolder } from "../formats/dcp/open.js";
import type { SpikeEvent, SpikeOptions } from "./spikes.js";

export interface PmaInitOptions {
  /** The run directory (checkpoints and, for auto, its log). */
  run: string;
  /**
   * The directory of the restarted run; the checkpoint goes to `out/checkpoint-<S>`.
   * Default: `<run>-pma-init` beside the run.
   */
  out?: string;
  /** Restart strictly before this step; default: before the spike found in the log. */
  before?: number;
  /** Restart before this spike (from detectSpikes on the run's log) rather than the newest unrecovered one. */
  event?: SpikeEvent;
  /** N, default 3 as in the paper. */
  count?: number;
  /** See InitSelectOptions.margin. */
  margin?: number;
  method?: MethodSpec;
  /** Default "latest". */
  optimizer?: OptimizerChoice;
  /** A log file or folder other than the run directory. */
  log?: string;
  /** The training loss's tag, column or key in the log (see ReadLogOptions.lossKey). */
  lossKey?: string;
  force?: boolean;
  discover?: Omit<DiscoverOptions, "settleMs">;
  spikeOptions?: Partial<SpikeOptions>;
  accumulate?: MergeOptions["accumulate"];
  threads?: number;
  /** Reuse an existing scan / log (pma watch has both already). */
  scan?: RunScan;
  trainingLog?: TrainingLog | null;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
  /** Megatron runs: update latest_checkpointed_iteration.txt in `out` to the new checkpoint. */
  activate?: boolean;
}

export interface InitCheckpointRecord {
  path: string;
  name: string;
  step: number;
  tokens: number | null;
  coefficient: number;
}

/** Written to `pma_init.json` beside the merged weights, and returned. */
export interface InitRecord {
  pma_version: string;
  run: string;
  /** The restart checkpoint written. */
  checkpoint: string;
  /** Its step: training resumes after this step. */
  step: number;
  tokens: number | null;
  reason: InitReason;
  method: string;
  checkpoints: InitCheckpointRecord[];
  /** Where trainer state, scheduler, RNG (and optimizer) files came from. */
  state_from: string;
  /**
   * "pma": pma's trainer (resume with pma train --resume); "trainer": a Hugging Face
   * Trainer-style run; the others: distributed checkpoints in that trainer's layout.
   */
  layout: "pma" | "trainer" | DcpRunLayout;
  optimizer: OptimizerChoice;
  /** Copied unchanged from state_from. */
  copied: string[];
  /** Written for the restart from state_from's versions (pma runs: optimizer moments and state). */
  adapted: string[];
  /** pma runs: the restarted run's log.jsonl, the original's lines up to the restart step (null: not written). */
  log_prefix: string | null;
  omitted: { name: string; reason: string }[];
  notes: string[];
  log: { format: string; files: string[] } | null;
  merge: Pick<
    MergeRecord,
    "coefficients" | "dtype" | "accumulate" | "tensors" | "parameters" | "bytes_read" | "seconds"
  >;
  created_at: string;
}

export const INIT_RECORD_FILE = "pma_init.json";

/** `<run>-pma-init`, beside the run. */
export function defaultInitOut(run: string): string {
  const abs = resolve(run);
  return join(dirname(abs), `${basename(abs)}-pma-init`);
}

async function readLogFor(opts: PmaInitOptions, required: boolean): Promise<TrainingLog | null> {
  if (opts.trainingLog !== undefined) return opts.trainingLog;
  try {
    return await readTrainingLog(
      opts.log ?? opts.run,
      opts.lossKey === undefined ? {} : { lossKey: opts.lossKey },
    );
  } catch (e) {
    // With --before the log only adds the loss at that step to the explanation.
    if (!required) return null;
    throw e;
  }
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Steps of the `checkpoint-N` folders already in `dir`. */
async function existingSteps(dir: string): Promise<number[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.flatMap((n) => {
    const m = /^checkpoint-(\d+)$/.exec(n);
    return m === null ? [] : [Number(m[1])];
  });
}

/** The merged checkpoints as pma_init.json lists them, each with its coefficient. */
function checkpointRecords(
  inputs: readonly { path: string; name: string; step: number; tokens: number | null }[],
  coefficients: readonly number[],
): InitCheckpointRecord[] {
  return inputs.map((c, i) => ({
    path: c.path,
    name: c.name,
    step: c.step,
    tokens: c.tokens,
    coefficient: coefficients[i]!,
  }));
}

/** Chooses, merges and writes a PMA-init restart checkpoint; see the module comment. */
export async function pmaInit(opts: PmaInitOptions): Promise<InitRecord> {
  const scan = opts.scan ?? (await discoverRun(opts.run, opts.discover ?? {}));
  const log = await readLogFor(opts, opts.before === undefined);
  const count = opts.count ?? DEFAULT_INIT_COUNT;
  const selection = selectInitCheckpoints(scan, log, {
    count,
    margin: opts.margin ?? DEFAULT_INIT_MARGIN,
    ...(opts.before !== undefined ? { before: opts.before } : {}),
    ...(opts.event !== undefined ? { event: opts.event } : {}),
    ...(opts.spikeOptions !== undefined ? { spikeOptions: opts.spikeOptions } : {}),
  });
  const inputs = selection.checkpoints;
  const latest = inputs[inputs.length - 1]!;
  const outDir = resolve(opts.out ?? defaultInitOut(opts.run));
  if (await isDcpFolder(latest.path)) return initDcpRun(opts, scan, selection, outDir, log);
  const target = join(outDir, `checkpoint-${latest.step}`);
  if (scan.checkpoints.some((c) => resolve(c.path) === target)) {
    throw new PmaError(
      "USAGE",
      `${target} is a checkpoint of the run itself; write the restart checkpoint into another directory (--out)`,
      { file: target },
    );
  }
  const notes = [...selection.notes];
  const later = (await existingSteps(outDir)).filter((s) => s > latest.step);
  if (later.length > 0) {
    notes.push(
      `${outDir} already holds checkpoint-${Math.max(...later)}; a Trainer resuming with resume_from_checkpoint=True picks the highest step, so pass the path of checkpoint-${latest.step} explicitly`,
    );
  }
  const optimizer = opts.optimizer ?? "latest";
  const filePlan = await planResumeFiles(latest.path, optimizer);
  const pmaFiles = await pmaStateFiles(latest.path);
  filePlan.copy = filePlan.copy.filter((f) => !pmaFiles.includes(f));
  const layout = pmaFiles.length > 0 ? "pma" : "trainer";

  const staged = await StagedDir.create(target, opts.force ?? false);
  try {
    // The merge publishes its own folder atomically; merging into a folder inside the
    // staging area and moving its files up keeps one atomic publish for the whole checkpoint.
    const weightsDir = join(staged.staging, "weights");
    const merged = await merge({
      inputs: inputs.map((c) => c.path),
      out: weightsDir,
      method: opts.method ?? DEFAULT_METHOD,
      keepOrder: true,
      ...(opts.accumulate !== undefined ? { accumulate: opts.accumulate } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
      ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    });
    for (const name of await readdir(weightsDir))
      await rename(join(weightsDir, name), join(staged.staging, name));
    await rmdir(weightsDir);
    await copyResumeFiles(latest.path, staged.staging, filePlan, opts.signal);
    for (const name of filePlan.copy) await fsyncFile(join(staged.staging, name));
    const logStart = layout === "pma" ? await logContinuation(scan.dir, outDir, latest.step) : null;
    const adapted: string[] = [];
    if (layout === "pma") {
      const pma = await writePmaResumeState(latest.path, staged.staging, target, optimizer);
      adapted.push("pma_state.json", pma.optimizerFile);
      for (const name of adapted) await fsyncFile(join(staged.staging, name));
    }

    const record: InitRecord = {
      pma_version: PMA_VERSION,
      run: scan.dir,
      checkpoint: target,
      step: latest.step,
      tokens: latest.tokens,
      reason: selection.reason,
      method: merged.method,
      checkpoints: checkpointRecords(inputs, merged.coefficients),
      state_from: latest.path,
      layout,
      optimizer,
      copied: filePlan.copy,
      adapted,
      log_prefix: logStart?.path ?? null,
      omitted: filePlan.omitted,
      notes,
      log: log === null ? null : { format: log.format, files: log.files },
      merge: {
        coefficients: merged.coefficients,
        dtype: merged.dtype,
        accumulate: merged.accumulate,
        tensors: merged.tensors,
        parameters: merged.parameters,
        bytes_read: merged.bytes_read,
        seconds: merged.seconds,
      },
      created_at: new Date().toISOString(),
    };
    const recordPath = join(staged.staging, INIT_RECORD_FILE);
    const fh = await open(recordPath, "w");
    try {
      await fh.writeFile(JSON.stringify(record, null, 2) + "\n");
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.signal?.aborted)
      throw new PmaError("INTERRUPTED", "PMA-init interrupted; no output was written");
    await staged.publish();
    if (logStart !== null) await writeFileAtomic(logStart.path, logStart.text);
    return record;
  } catch (e) {
    await staged.discard();
    throw e;
  }
}

/** PMA-init of a run of distributed checkpoints, written in its trainer's own layout (init-dcp.ts). */
async function initDcpRun(
  opts: PmaInitOptions,
  scan: RunScan,
  selection: ReturnType<typeof selectInitCheckpoints>,
  outDir: string,
  log: TrainingLog | null,
): Promise<InitRecord> {
  const inputs = selection.checkpoints;
  const latest = inputs[inputs.length - 1]!;
  if (opts.optimizer === "reset") {
    throw new PmaError(
      "USAGE",
      "--optimizer reset is not available for distributed checkpoints: the merged checkpoint keeps the trainer's exact layout, optimizer state included; use --optimizer latest",
    );
  }
  const folder = join(outDir, dcpInitFolder(dcpRunLayout(latest.path), latest.step));
  if (scan.checkpoints.some((c) => resolve(c.path) === folder || dirname(resolve(c.path)) === folder)) {
    throw new PmaError(
      "USAGE",
      `${folder} is a checkpoint of the run itself; write the restart checkpoint into another directory (--out)`,
      { file: folder },
    );
  }
  const r = await pmaInitDcp({
    inputs: inputs.map((c) => c.path),
    step: latest.step,
    outDir,
    method: opts.method ?? { method: "sma" },
    optimizer: "copy",
    force: opts.force ?? false,
    activate: opts.activate ?? false,
    ...(opts.accumulate !== undefined ? { accumulate: opts.accumulate } : {}),
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
    ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
  });
  const notes = [...selection.notes];
  if (r.activated !== null)
    notes.push(
      `${r.activated} now names iteration ${latest.step}: Megatron-LM started with --load ${outDir} resumes from the merged checkpoint`,
    );
  else if (r.layout === "megatron")
    notes.push(
      `${MEGATRON_TRACKER} was not changed; pass --activate (or start Megatron-LM with --ckpt-step ${latest.step}) to resume from the merged checkpoint`,
    );
  const m = r.merged;
  const record: InitRecord = {
    pma_version: PMA_VERSION,
    run: scan.dir,
    checkpoint: r.checkpoint,
    step: latest.step,
    tokens: latest.tokens,
    reason: selection.reason,
    method: m.method,
    checkpoints: checkpointRecords(inputs, m.coefficients),
    state_from: latest.path,
    layout: r.layout,
    optimizer: "latest",
    copied: ["non-tensor items and optimizer state of the newest checkpoint", ...r.copied],
    adapted: [],
    log_prefix: null,
    omitted: [],
    notes,
    log: log === null ? null : { format: log.format, files: log.files },
    merge: {
      coefficients: m.coefficients,
      dtype: m.dtype,
      accumulate: m.accumulate,
      tensors: m.tensors,
      parameters: m.parameters,
      bytes_read: m.bytes_read,
      seconds: m.seconds,
    },
    created_at: new Date().toISOString(),
  };
  await writeFileAtomic(join(r.checkpoint, INIT_RECORD_FILE), JSON.stringify(record, null, 2) + "\n");
  return record;
}

/**
 * Starts the restarted run's log.jsonl with the original's lines up to the restart step,
 * so the resumed run's log reads as one curve. An existing log there is left alone.
 */
async function logContinuation(
  runDir: string,
  outDir: string,
  step: number,
): Promise<{ path: string; text: string } | null> {
  const path = join(outDir, "log.jsonl");
  if (
    await access(path).then(
      () => true,
      () => false,
    )
  )
    return null;
  const text = await logPrefix(runDir, step);
  return text === null ? null : { path, text };
}
