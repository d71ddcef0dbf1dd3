import { PmaError } from "../common/errors.js";
import { formatTokens, parseTokens } from "../common/units.js";
import { explainInit } from "../trajectory/init-explain.js";
import { defaultWatchOut, watchRun, type Evaluator, type WatchEvent } from "../trajectory/watch.js";
import { parseCommandArgs, type Command } from "./command.js";
import { DISCOVER_OPTIONS, DISCOVER_USAGE, discoverFromFlags, intFlag } from "./discover-flags.js";
import { interruptSignal } from "./interrupt.js";
import { INIT_OPTIONS, initFromFlags, MERGE_RUN_OPTIONS, mergeRunFromFlags } from "./merge-flags.js";
import { METHOD_OPTIONS, METHOD_USAGE, methodFromFlags } from "./method-flags.js";

const usage = `usage: pma watch RUN --interval V|auto --count N [--out DIR] [options]

Runs beside a training job. On each new complete checkpoint it merges the window of N
checkpoints V tokens apart ending there into DIR/merged (replaced atomically) and appends
a line to DIR/watch.jsonl (tokens, the window, and with an evaluator the raw and merged
losses). It watches the run's log for loss spikes and, for each one the run has not
recovered from, writes a PMA-init restart checkpoint to DIR/pma-init-<spike step>/
(see pma init). Checkpoints still being written are waited for, never merged.

Stop it with Ctrl-C (SIGINT) or SIGTERM: a merge in progress is abandoned without
leaving output. Started again with the same DIR, it continues after the last checkpoint
in watch.jsonl; a first start begins at the run's newest checkpoint, or with --backfill
at its oldest (one merge, and with --eval one pair of losses, per checkpoint already
there, so watch.jsonl holds the whole curve).

--interval auto takes V from the paper's intervals for the model's size (as pma plan
does), read from the first complete checkpoint; the choice and its basis are printed
and recorded in watch.jsonl, and a restart keeps that V.

options:
  --interval V          tokens between merged checkpoints (8B, 80M, 2e9), or auto
  --count N             checkpoints per merge (default 10; fewer while the run is short)
  --tolerance T         how far a checkpoint may be from its target (default half the save spacing)
${METHOD_USAGE}
  --out DIR             output directory (default RUN-pma-watch)
  --poll SECONDS        time between scans of the run (default 10)
  --settle SECONDS      a checkpoint's files must keep their size this long (default 2)
  --no-init             do not write PMA-init checkpoints on spikes
  --init-count N        checkpoints merged for a PMA-init (default 3)
  --optimizer O         PMA-init optimizer state: latest (default) | reset (see pma init)
  --margin STEPS        PMA-init: steps kept clear of the last healthy loss (default 1)
  --log PATH            the training log, when it is not in RUN
  --loss-key NAME       the training loss's TensorBoard tag, CSV column or log_history key,
                        when pma does not recognise its name (docs/logs.md lists those it does)
${DISCOVER_USAGE}
  --accumulate P        f64 (default; exact: identical inputs merge to themselves) | f32
  --threads N           merge worker threads (default: all cores)
  --eval                score the newest checkpoint and the merge on the held-out split (pma eval),
                        with the same windows, and record both losses
  --eval-tokens N       score about N held-out tokens (default: the whole split)
  --backfill            on a first start, merge (and --eval) at every checkpoint already in RUN
  --tune                every --tune-every new merges, run pma tune on the run so far (on
                        --tune-data) and publish its winner in DIR/tuned/ beside DIR/merged/;
                        a "tune" line in watch.jsonl records its loss and the fixed recipe's
  --tune-data FILE      held-out text for --tune (.txt or .jsonl; --tune-text-field F)
  --tune-every K        re-tune every K new merges (default 5)
  --tune-budget B       evaluations per tune (default 30; earlier ones are reused)
  --tune-tokens N       score about N tokens of the tune data (default: all)
  --once                scan once, process what is there, and exit
  --json                print each event as one JSON line

examples:
  pma watch runs/7b --interval 8B --count 10 --out runs/7b-merged
  pma watch runs/7b --interval auto --count 10
  pma watch runs/lab --interval auto --count 5 --backfill --eval --eval-tokens 64K --once`;

/**
 * pma eval's evaluator, loaded only when asked for (it brings the training engine). The
 * merge is scored with the raw checkpoint's window length and corpus: a merge folder has
 * no run state of its own to take them from.
 */
async function heldoutEvaluator(maxTokens: number): Promise<{ evaluate: Evaluator; close(): void }> {
  const { Evaluator } = await import("../eval/evaluate.js");
  const ev = new Evaluator();
  return {
    evaluate: async (raw, merged) => {
      const r = await ev.evaluate(raw, { maxTokens });
      const m = await ev.evaluate(merged, { maxTokens, seq: r.seq, corpus: r.corpus });
      return { raw: r.loss, merged: m.loss };
    },
    close: () => ev.close(),
  };
}

async function tunerFromFlags(
  values: Record<string, string | boolean | undefined>,
  run: string,
  out: string,
  method: ReturnType<typeof methodFromFlags>,
) {
  const str = (k: string) => (typeof values[k] === "string" ? (values[k] as string) : undefined);
  if (values.tune !== true) {
    for (const f of ["tune-data", "tune-text-field", "tune-every", "tune-budget", "tune-tokens"])
      if (str(f) !== undefined) throw new PmaError("USAGE", `--${f} needs --tune`);
    return null;
  }
  const data = str("tune-data");
  if (data === undefined)
    throw new PmaError("USAGE", "--tune needs --tune-data FILE: the held-out text to tune on");
  const { watchTuner } = await import("./watch-tune.js");
  const tokens = str("tune-tokens");
  const field = str("tune-text-field");
  return watchTuner({
    run,
    out,
    data,
    method,
    every: str("tune-every") === undefined ? 5 : intFlag(str("tune-every")!, "--tune-every", 1),
    budget: str("tune-budget") === undefined ? 30 : intFlag(str("tune-budget")!, "--tune-budget", 1),
    ...(tokens !== undefined ? { maxTokens: parseTokens(tokens, "--tune-tokens") } : {}),
    ...(field !== undefined ? { textField: field } : {}),
    onLine: (l) =>
      process.stdout.write(
        values.json === true
          ? JSON.stringify(l) + "\n"
          : l.error !== undefined
            ? `step ${l.step}: tune failed: ${l.error}\n`
            : `step ${l.step}: tuned ${l.best} loss ${l.tuned_loss?.toFixed(4)}${l.fixed_loss !== null ? ` (fixed recipe ${l.fixed_loss.toFixed(4)})` : ""}; ${l.evaluations} evaluations, ${l.computed} new; published in ${out}/tuned/best\n`,
      ),
  });
}

function seconds(text: string, flag: string): number {
  const x = Number(text);
  if (text.trim() === "" || !(x >= 0) || !Number.isFinite(x))
    throw new PmaError("USAGE", `${flag} must be a number of seconds >= 0 (got '${text}')`);
  return x * 1000;
}

function loss(x: number | string | null): string {
  return typeof x === "number" ? x.toFixed(4) : String(x);
}

function describe(e: WatchEvent): string {
  switch (e.type) {
    case "started":
      return `watching; writing to ${e.out}${e.resumeAfterStep !== null ? ` (continuing after step ${e.resumeAfterStep})` : ""}\n`;
    case "waiting":
      return `waiting for ${e.path}: ${e.reason}\n`;
    case "note":
      return `note: ${e.message}\n`;
    case "merge": {
      const m = e.entry;
      const head = `step ${m.step} (${formatTokens(m.tokens)} tokens):`;
      if (m.error !== undefined) return `${head} not merged: ${m.error}\n`;
      const losses =
        m.raw_loss !== null ? `; loss raw ${loss(m.raw_loss)}, merged ${loss(m.merged_loss)}` : "";
      return `${head} merged ${m.inputs.map((i) => i.name).join(", ")}${losses}\n`;
    }
    case "spike": {
      const s = e.entry;
      const head = `spike at step ${s.start_step} (${s.kind}, peak loss ${loss(s.peak_loss)} at step ${s.peak_step}):`;
      if (e.init !== null) return `${head} wrote a PMA-init checkpoint\n${explainInit(e.init)}`;
      return `${head} ${s.action}\n`;
    }
  }
}

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        ...METHOD_OPTIONS,
        ...DISCOVER_OPTIONS,
        interval: { type: "string" },
        count: { type: "string" },
        tolerance: { type: "string" },
        out: { type: "string", short: "o" },
        poll: { type: "string" },
        settle: { type: "string" },
        "no-init": { type: "boolean" },
        "init-count": { type: "string" },
        ...INIT_OPTIONS,
        ...MERGE_RUN_OPTIONS,
        backfill: { type: "boolean" },
        once: { type: "boolean" },
        eval: { type: "boolean" },
        "eval-tokens": { type: "string" },
        tune: { type: "boolean" },
        "tune-data": { type: "string" },
        "tune-text-field": { type: "string" },
        "tune-every": { type: "string" },
        "tune-budget": { type: "string" },
        "tune-tokens": { type: "string" },
        json: { type: "boolean" },
      },
      usage,
    );
    if (positionals.length !== 1) throw new PmaError("USAGE", `give exactly one run directory\n\n${usage}`);
    const run = positionals[0]!;
    if (values.interval === undefined)
      throw new PmaError("USAGE", "--interval V is required (a token count such as 8B, or auto)");
    const { log, lossKey, ...init } = initFromFlags(values);
    const mergeRun = mergeRunFromFlags(values);
    if (values["eval-tokens"] !== undefined && values.eval !== true)
      throw new PmaError("USAGE", "--eval-tokens needs --eval");
    const evaluator =
      values.eval === true
        ? await heldoutEvaluator(
            values["eval-tokens"] === undefined ? 0 : parseTokens(values["eval-tokens"], "--eval-tokens"),
          )
        : null;
    const out = values.out ?? defaultWatchOut(run);
    const tuner = await tunerFromFlags(values, run, out, methodFromFlags(values));
    const interrupt = interruptSignal();
    try {
      const summary = await watchRun(
        {
          run,
          out,
          interval: values.interval === "auto" ? "auto" : parseTokens(values.interval, "--interval"),
          count: values.count === undefined ? 10 : intFlag(values.count, "--count", 1),
          ...(values.tolerance !== undefined
            ? { tolerance: parseTokens(values.tolerance, "--tolerance") }
            : {}),
          method: methodFromFlags(values),
          pollMs: values.poll === undefined ? 10_000 : seconds(values.poll, "--poll"),
          settleMs: values.settle === undefined ? 2000 : seconds(values.settle, "--settle"),
          discover: discoverFromFlags(values),
          init: values["no-init"]
            ? false
            : {
                count:
                  values["init-count"] === undefined ? 3 : intFlag(values["init-count"], "--init-count", 1),
                ...init,
              },
          ...(log !== undefined ? { log } : {}),
          ...(lossKey !== undefined ? { lossKey } : {}),
          ...mergeRun,
          backfill: values.backfill ?? false,
          once: values.once ?? false,
          ...(evaluator !== null ? { evaluate: evaluator.evaluate } : {}),
          onEvent: (e) => {
            process.stdout.write(values.json ? JSON.stringify(e) + "\n" : describe(e));
            if (e.type === "merge") tuner?.onMerge(e.entry);
          },
        },
        interrupt.signal,
      );
      await tuner?.finish();
      const done = `${summary.merged} merge(s), ${summary.spikes} spike(s), ${summary.errors} error(s); last step ${summary.lastStep ?? "none"}`;
      process.stdout.write(
        values.json
          ? JSON.stringify({ type: "stopped", ...summary }) + "\n"
          : `stopped (${summary.stopped}): ${done}\n`,
      );
    } finally {
      interrupt.dispose();
      evaluator?.close();
    }
    return 0;
  },
};
