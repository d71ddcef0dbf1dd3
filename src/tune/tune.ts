/**
 * `pma tune`: finds the best merge of a run's checkpoints on the user's held-out text
 * within a budget of evaluations (search.ts), scoring each candidate in memory from
 * prefix sums or weighted reads (checkpoint-sums.ts) with pma's engine, caching every
 * evaluation, and writing the winner with the exact merger.
 *
 * Caches, under $PMA_CACHE_DIR/tune/<run fingerprint>/ (the fingerprint covers each
 * checkpoint's path, weight file sizes and modification times):
 *   prefix/s<stride>/      prefix sums (float64) per tensor
 *   evals-<key>.jsonl      one line per evaluated candidate, key = data, tokenizer, seq,
 *                          token budget and batch, so a rerun or a larger budget reuses them.
 */
import { createHash } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeFile } from "node:fs/promises";
import { StagedDir } from "../common/atomic-dir.js";
import { PmaError } from "../common/errors.js";
import { tokenizeTextFile } from "../data/text-tokens.js";
import { bitsPerByte, DataScorer } from "../eval/data-eval.js";
import { merge } from "../merge/merger.js";
import { getBackend, describeBackend } from "../nn/kernels/index.js";
import { readPmaState } from "../train/checkpoint.js";
import { cacheDirectory } from "../data/tokenizer-cache.js";
import { readModelConfig } from "../train/weights-io.js";
import { discoverRun, type RunCheckpoint } from "../trajectory/run.js";
import {
  candidateCoefficients,
  candidateKey,
  methodSpec,
  prefixKind,
  windowIndices,
  type Candidate,
  type TuneMethod,
} from "./candidates.js";
import { CheckpointSet, PrefixSums } from "./checkpoint-sums.js";
import { best, searchMerges, type SearchPhase } from "./search.js";
import { PARAM_DEFAULTS } from "../merge/methods.js";

export interface TuneOptions {
  run: string;
  data: string;
  textField?: string;
  tokenizer?: string;
  budget: number;
  /** Output folder: best/ (the winning merge), candidates.tsv, tune.json, merge-command.txt, index.html. */
  out: string;
  force?: boolean;
  seq?: number;
  maxTokens?: number;
  batch?: number;
  /** Only checkpoints up to this step (pma watch --tune on a backfilled run); default all. */
  untilStep?: number;
  /** How many of the newest checkpoints may end a window (default 1: the newest). */
  ends?: number;
  maxCount?: number;
  methods?: TuneMethod[];
  cacheDir?: string;
  /**
   * Merges scored beside the search (not counted in the budget), e.g. a fixed recipe to
   * compare with: checkpoint names of the run, oldest first, evenly spaced on its grid.
   */
  compare?: CompareRecipe[];
  /** Let a compared recipe be the winner when it beats every searched candidate. */
  comparedCompete?: boolean;
  /** Renders the HTML page (the report layer's renderTunePage); absent: no page. */
  renderPage?: (r: TuneResult) => Promise<string>;
  onEvaluation?: (e: TuneEvaluation, done: number, budget: number) => void;
}

export interface CompareRecipe {
  label: string;
  checkpoints: string[];
  method: TuneMethod;
  alpha?: number;
}

/** The candidate a recipe given by checkpoint names is, on the run's grid. */
export function recipeCandidate(names: readonly string[], r: CompareRecipe): Candidate {
  const idx = r.checkpoints.map((n) => names.indexOf(n));
  const missing = r.checkpoints.filter((_, i) => idx[i]! < 0);
  if (idx.length === 0 || missing.length > 0)
    throw new PmaError(
      "USAGE",
      `${r.label}: ${idx.length === 0 ? "no checkpoints" : `not checkpoints of the run: ${missing.join(", ")}`}`,
    );
  const stride = idx.length > 1 ? idx[1]! - idx[0]! : 1;
  if (stride < 1 || idx.some((x, i) => x !== idx[0]! + i * stride)) {
    throw new PmaError(
      "USAGE",
      `${r.label}: checkpoints ${r.checkpoints.join(", ")} are not evenly spaced on the run's checkpoint grid, oldest first`,
    );
  }
  return {
    method: r.method,
    ...(r.method === "ema" ? { alpha: r.alpha ?? PARAM_DEFAULTS.alpha } : {}),
    stride,
    count: idx.length,
    end: idx[idx.length - 1]!,
  };
}

export interface TuneEvaluation {
  phase: SearchPhase | "compare";
  label?: string;
  key: string;
  candidate: Candidate;
  /** Checkpoint names of the window, oldest first, and their coefficients. */
  checkpoints: string[];
  coefficients: number[];
  /** V in tokens (stride x save spacing), when the run records tokens. */
  intervalTokens: number | null;
  loss: number;
  bitsPerByte: number;
  /** "prefix" (prefix sums) or "direct" (one read per checkpoint). */
  path: "prefix" | "direct";
  reused: boolean;
  seconds: number;
}

export interface TuneResult {
  run: string;
  data: string;
  dataSha256: string;
  seq: number;
  tokensScored: number;
  checkpoints: { name: string; path: string; step: number; tokens: number | null }[];
  budget: number;
  evaluations: TuneEvaluation[];
  compared: TuneEvaluation[];
  /** Evaluations newly computed (the rest came from the cache). */
  computed: number;
  best: TuneEvaluation;
  baseline: TuneEvaluation;
  /** The first evaluation (1-based) that reached the best loss. */
  bestAt: number;
  mergeCommand: string;
  out: string;
  backend: string;
  precision: string;
  seconds: number;
}

export const PREFIX_PRECISION =
  "SMA and WMA candidates are scored from float64 prefix sums of the checkpoints (a window differs from the exact float64 merge by the rounding of the running sums, below 2^-40 relative), " +
  "the others from float64 weighted reads identical to pma merge --accumulate f64; both are rounded once to float32 for scoring. The winner is written by the exact merger with --accumulate f64.";

function fingerprint(checkpoints: readonly RunCheckpoint[]): string {
  const h = createHash("sha256");
  for (const c of checkpoints) {
    h.update(c.path);
    for (const f of readdirSync(c.path).sort()) {
      if (!f.endsWith(".safetensors") && !f.endsWith(".json")) continue;
      const s = statSync(join(c.path, f));
      h.update(`\0${f}\0${s.size}\0${s.mtimeMs}`);
    }
  }
  return h.digest("hex").slice(0, 20);
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./=:,+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function mergeCommandFor(paths: readonly string[], c: Candidate, out: string): string {
  const m =
    c.method === "ema"
      ? ["--method", "ema", "--alpha", String(c.alpha)]
      : c.method.startsWith("wsm-")
        ? ["--method", "wsm", "--decay", c.method.slice(4)]
        : ["--method", c.method];
  return ["pma", "merge", ...paths, "--out", out, ...m, "--accumulate", "f64"].map(shellQuote).join(" ");
}

export async function tuneRun(opts: TuneOptions): Promise<TuneResult> {
  const t0 = performance.now();
  const scan = await discoverRun(opts.run);
  const cks = scan.checkpoints.filter((c) => opts.untilStep === undefined || c.step <= opts.untilStep);
  if (cks.length < 2)
    throw new PmaError(
      "USAGE",
      `${scan.dir}: pma tune needs a run with at least 2 complete checkpoints (found ${cks.length})`,
      { file: scan.dir },
    );
  const newest = cks[cks.length - 1]!;
  const compareCandidates = (opts.compare ?? []).map((c) => ({
    label: c.label,
    candidate: recipeCandidate(
      cks.map((k) => k.name),
      c,
    ),
  }));
  const config = await readModelConfig(newest.path);
  const pmaState = await readPmaState(newest.path).catch(() => null);
  const seq = opts.seq ?? pmaState?.config.data.seq_len ?? config.max_position_embeddings;
  const cacheDir = opts.cacheDir ?? cacheDirectory();
  const data = tokenizeTextFile(
    opts.data,
    resolve(opts.tokenizer ?? join(newest.path, "tokenizer.json")),
    cacheDir,
    opts.textField !== undefined ? { textField: opts.textField } : {},
  );
  const root = join(cacheDir, "tune", fingerprint(cks));
  const evalKey = createHash("sha256")
    .update(
      JSON.stringify({
        data: data.dataSha256,
        tok: data.tokenizerSha256,
        seq,
        max: opts.maxTokens ?? 0,
        batch: opts.batch ?? 16,
      }),
    )
    .digest("hex")
    .slice(0, 16);
  mkdirSync(root, { recursive: true });
  const evalFile = join(root, `evals-${evalKey}.jsonl`);
  const cached = new Map<string, number>();
  if (existsSync(evalFile)) {
    for (const line of readFileSync(evalFile, "utf8").split("\n")) {
      if (line.trim() === "") continue;
      try {
        const e = JSON.parse(line) as { key: string; loss: number };
        if (typeof e.key === "string" && typeof e.loss === "number") cached.set(e.key, e.loss);
      } catch {
        // a torn last line from an interrupted run: that candidate is evaluated again
      }
    }
  }

  const backend = await getBackend();
  const set = await CheckpointSet.open(cks.map((c) => c.path));
  const sums = new Map<string, PrefixSums>();
  const evaluations: TuneEvaluation[] = [];
  const compared: TuneEvaluation[] = [];
  let computed = 0;
  const spacing =
    cks.length >= 2 && cks.every((c) => c.tokens !== null)
      ? (newest.tokens! - cks[0]!.tokens!) / (cks.length - 1)
      : null;
  try {
    const scorer = DataScorer.create(config, data, backend, {
      seq,
      ...(opts.batch !== undefined ? { batch: opts.batch } : {}),
      maxTokens: opts.maxTokens ?? 0,
    });
    const score = async (
      phase: TuneEvaluation["phase"],
      c: Candidate,
      label?: string,
    ): Promise<TuneEvaluation> => {
      const t = performance.now();
      const key = candidateKey(c);
      const indices = windowIndices(c);
      const coefficients = candidateCoefficients(c);
      const kind = c.count > 1 ? prefixKind(c) : null;
      let loss = cached.get(key);
      const reused = loss !== undefined;
      if (loss === undefined) {
        let weights: Map<string, Float32Array>;
        if (kind !== null) {
          const at = `${c.stride}/${c.end % c.stride}`;
          let p = sums.get(at);
          if (p === undefined)
            sums.set(at, (p = await PrefixSums.open(set, join(root, "prefix"), c.stride, c.end % c.stride)));
          weights = await p.window(c.end, c.count, kind);
        } else {
          weights = await set.weightedSum(indices, coefficients);
        }
        loss = scorer.score(weights).loss;
        cached.set(key, loss);
        computed++;
        appendFileSync(evalFile, JSON.stringify({ key, loss }) + "\n");
      }
      const e: TuneEvaluation = {
        phase,
        ...(label !== undefined ? { label } : {}),
        key,
        candidate: c,
        checkpoints: indices.map((i) => cks[i]!.name),
        coefficients,
        intervalTokens: spacing === null ? null : Math.round(spacing * c.stride),
        loss,
        bitsPerByte: bitsPerByte(loss, data.tokens.length, data.bytes),
        path: kind !== null ? "prefix" : "direct",
        reused,
        seconds: (performance.now() - t) / 1000,
      };
      return e;
    };
    const ends = Array.from(
      { length: Math.min(opts.ends ?? 1, cks.length) },
      (_, i) => cks.length - 1 - i,
    ).reverse();
    const steps = await searchMerges(
      {
        checkpoints: cks.length,
        ends,
        ...(opts.maxCount !== undefined ? { maxCount: opts.maxCount } : {}),
        ...(opts.methods !== undefined ? { methods: opts.methods } : {}),
      },
      async (c, phase) => {
        const e = await score(phase, c);
        evaluations.push(e);
        opts.onEvaluation?.(e, evaluations.length, opts.budget);
        return e.loss;
      },
      opts.budget,
    );
    for (const c of compareCandidates) compared.push(await score("compare", c.candidate, c.label));
    const searched = evaluations[steps.indexOf(best(steps)!)]!;
    const bestAt = 1 + evaluations.findIndex((e) => e.loss === searched.loss);
    // With comparedCompete a compared recipe that beats the search is the winner (pma watch
    // publishes the better of the two); otherwise compared recipes are only reported.
    const bestEval =
      opts.comparedCompete === true
        ? [searched, ...compared].reduce((a, x) => (x.loss < a.loss ? x : a))
        : searched;
    const out = resolve(opts.out);
    const b = { candidate: bestEval.candidate };
    const winnerPaths = windowIndices(b.candidate).map((i) => cks[i]!.path);
    const result: TuneResult = {
      run: scan.dir,
      data: data.dataFile,
      dataSha256: data.dataSha256,
      seq,
      tokensScored: scorer.windows * seq,
      checkpoints: cks.map((c) => ({ name: c.name, path: c.path, step: c.step, tokens: c.tokens })),
      budget: opts.budget,
      evaluations,
      compared,
      computed,
      best: bestEval,
      baseline: evaluations[0]!,
      bestAt,
      mergeCommand: mergeCommandFor(winnerPaths, b.candidate, join(out, "best")),
      out,
      backend: describeBackend(backend).name,
      precision: PREFIX_PRECISION,
      seconds: 0,
    };
    result.seconds = (performance.now() - t0) / 1000;
    await writeOutputs(result, winnerPaths, b.candidate, opts);
    return result;
  } finally {
    await set.close();
    backend.dispose();
  }
}

export function candidatesTable(r: TuneResult): string {
  const head = [
    "#",
    "phase",
    "method",
    "alpha",
    "stride",
    "V_tokens",
    "N",
    "end",
    "loss",
    "bits_per_byte",
    "path",
    "reused",
    "checkpoints",
  ];
  const rows = [...r.evaluations, ...r.compared].map((e, i) =>
    [
      e.phase === "compare" ? `compare:${e.label ?? ""}` : String(i + 1),
      e.phase,
      e.candidate.method,
      e.candidate.alpha !== undefined ? String(e.candidate.alpha) : "",
      String(e.candidate.stride),
      e.intervalTokens === null ? "" : String(e.intervalTokens),
      String(e.candidate.count),
      r.checkpoints[e.candidate.end]!.name,
      e.loss.toFixed(6),
      e.bitsPerByte.toFixed(6),
      e.path,
      String(e.reused),
      e.checkpoints.join(","),
    ].join("\t"),
  );
  return [head.join("\t"), ...rows].join("\n") + "\n";
}

async function writeOutputs(
  r: TuneResult,
  winnerPaths: string[],
  winner: Candidate,
  opts: TuneOptions,
): Promise<void> {
  const staged = await StagedDir.create(r.out, opts.force ?? false);
  try {
    await merge({
      inputs: winnerPaths,
      out: join(staged.staging, "best"),
      method: methodSpec(winner),
      accumulate: "f64",
      keepOrder: true,
    });
    await writeFile(join(staged.staging, "candidates.tsv"), candidatesTable(r));
    await writeFile(join(staged.staging, "merge-command.txt"), r.mergeCommand + "\n");
    await writeFile(join(staged.staging, "tune.json"), JSON.stringify(r, null, 2) + "\n");
    if (opts.renderPage !== undefined)
      await writeFile(join(staged.staging, "index.html"), await opts.renderPage(r));
    await staged.publish();
  } catch (e) {
    await staged.discard();
    throw e;
  }
}
