import { readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { isPmaError, PmaError } from "../common/errors.js";
import { INDEX_FILE, openCheckpointTensors, SINGLE_FILE } from "../formats/checkpoint-files.js";
import { staysInside } from "../formats/shard-path.js";
import { readTrainerState, stepFromName, TRAINER_STATE_FILE } from "../formats/trainer-state.js";
import { openRunDcp, type DcpRunCheckpoint } from "./dcp-run.js";
import { isRemoteUri } from "../sources/location.js";
import { discoverRemoteRun } from "./remote-run.js";
import { numel } from "../tensor/shape.js";

/** One complete checkpoint of a run, with how far training had gone. */
export interface RunCheckpoint {
  path: string;
  name: string;
  step: number;
  /** Tokens seen; null when neither trainer_state.json nor --tokens-per-step tells. */
  tokens: number | null;
  /** "name": a remote revision's or prefix's name said it (`tokens3892B`); "checkpoint": a distributed checkpoint's own items. */
  tokensFrom: "trainer_state" | "checkpoint" | "name" | "tokens-per-step" | null;
  /** Parameters, counted from the tensor headers. */
  parameters: number;
}

export interface SkippedCheckpoint {
  path: string;
  reason: string;
}

export interface RunScan {
  dir: string;
  /** Oldest first. */
  checkpoints: RunCheckpoint[];
  skipped: SkippedCheckpoint[];
}

export interface DiscoverOptions {
  /** Regex with one capture group for the step; default matches checkpoint-N, iter_N, step_N. */
  stepPattern?: RegExp;
  /** Tokens per optimizer step, for runs that do not record tokens. */
  tokensPerStep?: number;
  /** Re-check file sizes after this many ms and skip checkpoints that changed. */
  settleMs?: number;
}

/**
 * Finds the complete checkpoints of a run directory: Hugging Face Trainer and pma
 * `checkpoint-<step>/`, Megatron-style `iter_<N>/` (saved as safetensors), or any
 * names matched by `stepPattern`. A checkpoint still being written is skipped with the
 * reason, never returned: its safetensors must validate (every byte present), its
 * trainer_state.json must exist if its siblings have one (the Trainer writes it last),
 * and with `settleMs` its file sizes must not change.
 */
export async function discoverRun(dir: string, opts: DiscoverOptions = {}): Promise<RunScan> {
  if (isRemoteUri(dir)) return discoverRemoteRun(dir, opts);
  const root = resolve(dir);
  let entries;
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (e) {
    throw new PmaError("IO", `${root}: cannot read the run directory (${(e as Error).message})`, {
      file: root,
      cause: e,
    });
  }
  const candidates: { name: string; path: string; step: number }[] = [];
  for (const e of entries) {
    // Only real directories: a symlink could lead out of the run.
    if (!e.isDirectory() || e.name.startsWith(".")) continue;
    const step = stepOf(e.name, opts.stepPattern);
    if (step !== undefined) candidates.push({ name: e.name, path: join(root, e.name), step });
  }
  candidates.sort((a, b) => a.step - b.step);
  const withState = await Promise.all(
    candidates.map(async (c) => {
      const link = await linkLeavingCheckpoint(c.path);
      if (link !== null) return { ...c, link, state: null };
      return {
        ...c,
        link,
        state: await readTrainerState(c.path).catch((e: unknown): Error =>
          e instanceof Error ? e : new Error(String(e)),
        ),
      };
    }),
  );
  const anyState = withState.some((c) => c.state !== null && !(c.state instanceof Error));
  const checkpoints: RunCheckpoint[] = [];
  const skipped: SkippedCheckpoint[] = [];
  const sizesBefore = new Map<string, string>();
  for (const c of withState) {
    if (c.link !== null) {
      skipped.push({
        path: c.path,
        reason: `${c.link} is a link leading outside the checkpoint; a run directory's files must be its own`,
      });
      continue;
    }
    if (c.state instanceof Error) {
      skipped.push({ path: c.path, reason: `unreadable ${TRAINER_STATE_FILE}: ${c.state.message}` });
      continue;
    }
    if (c.state === null && anyState) {
      skipped.push({ path: c.path, reason: `no ${TRAINER_STATE_FILE} yet (still being written?)` });
      continue;
    }
    let parameters = 0;
    // A distributed checkpoint (Megatron torch_dist, torchtitan, OLMo-core) carries its own progress.
    let dcp: DcpRunCheckpoint | null = null;
    try {
      dcp = await openRunDcp(c.path);
    } catch (e) {
      if (!isPmaError(e)) throw e;
      skipped.push({ path: c.path, reason: `incomplete or invalid distributed checkpoint: ${e.message}` });
      continue;
    }
    if (dcp !== null) {
      sizesBefore.set(dcp.path, dcp.sizes);
      const tokens =
        dcp.tokens ?? (opts.tokensPerStep !== undefined ? (dcp.step ?? c.step) * opts.tokensPerStep : null);
      checkpoints.push({
        path: dcp.path,
        name: c.name,
        step: dcp.step ?? c.step,
        tokens,
        tokensFrom: dcp.tokens !== undefined ? "checkpoint" : tokens !== null ? "tokens-per-step" : null,
        parameters: dcp.parameters,
      });
      continue;
    }
    try {
      const ck = await openCheckpointTensors(c.path);
      for (const t of ck.tensors.values()) parameters += numel(t.shape);
      sizesBefore.set(c.path, ck.files.map((f) => `${f.path}:${f.fileSize}`).join("|"));
      await ck.close();
    } catch (e) {
      if (!isPmaError(e)) throw e;
      skipped.push({ path: c.path, reason: `incomplete or invalid weights: ${e.message}` });
      continue;
    }
    const stateTokens = c.state?.tokensSeen;
    const tokens = stateTokens ?? (opts.tokensPerStep !== undefined ? c.step * opts.tokensPerStep : null);
    checkpoints.push({
      path: c.path,
      name: c.name,
      step: c.state?.globalStep ?? c.step,
      tokens,
      tokensFrom: stateTokens !== undefined ? "trainer_state" : tokens !== null ? "tokens-per-step" : null,
      parameters,
    });
  }
  if (opts.settleMs !== undefined && opts.settleMs > 0) {
    await new Promise((r) => setTimeout(r, opts.settleMs));
    for (let i = checkpoints.length - 1; i >= 0; i--) {
      const c = checkpoints[i]!;
      const now = await fileSizes(sizesBefore.get(c.path)!);
      if (now !== sizesBefore.get(c.path)) {
        skipped.push({ path: c.path, reason: "files still changing size" });
        checkpoints.splice(i, 1);
      }
    }
  }
  return { dir: root, checkpoints, skipped };
}

/**
 * The first of a checkpoint's files that is a symlink leading out of it, or null.
 * Shards named by an index are confined by the index reader; these are the files found
 * by name. A run directory is untrusted (copied from a cluster, downloaded), and a link
 * would have pma read whatever it points to.
 */
async function linkLeavingCheckpoint(dir: string): Promise<string | null> {
  for (const name of [TRAINER_STATE_FILE, SINGLE_FILE, INDEX_FILE]) {
    if (!(await staysInside(dir, join(dir, name)))) return name;
  }
  return null;
}

function stepOf(name: string, pattern?: RegExp): number | undefined {
  if (pattern === undefined) return stepFromName(name);
  const m = pattern.exec(name);
  if (m === null) return undefined;
  const n = Number(m[1] ?? m[0]);
  return Number.isSafeInteger(n) ? n : undefined;
}

async function fileSizes(recorded: string): Promise<string> {
  const parts = await Promise.all(
    recorded.split("|").map(async (entry) => {
      const path = entry.slice(0, entry.lastIndexOf(":"));
      const size = await stat(path).then(
        (s) => s.size,
        () => -1,
      );
      return `${path}:${size}`;
    }),
  );
  return parts.join("|");
}

/** The checkpoints' token counts, or an error saying how to provide them. */
export function requireTokens(scan: RunScan): (RunCheckpoint & { tokens: number })[] {
  const missing = scan.checkpoints.filter((c) => c.tokens === null);
  if (missing.length > 0) {
    throw new PmaError(
      "USAGE",
      `${missing[0]!.path}: no token count (trainer_state.json has no num_input_tokens_seen); pass --tokens-per-step N (tokens per optimizer step) so pma can count tokens from steps`,
      { file: missing[0]!.path },
    );
  }
  return scan.checkpoints as (RunCheckpoint & { tokens: number })[];
}
