import { resolve } from "node:path";
import { PmaError } from "../common/errors.js";
import { runLab } from "../lab/lab.js";
import { PROFILE_NAMES } from "../lab/profile.js";
import { EXPERIMENT_IDS, type ExperimentId } from "../lab/result.js";
import { writeLabReport } from "../report/lab-report.js";
import { parseCommandArgs, type Command } from "./command.js";
import { interruptSignal } from "./interrupt.js";
import { labProgress } from "./lab-progress.js";

const USAGE = `usage: pma lab [EXPERIMENT... | all] [options]

Reproduces the paper's experiments at small scale with pma's own trainer, merger and
planner, scores them, and writes a report (DIR/lab-report/index.html).

experiments (default: all):
  stable-merge        merging in the constant-LR phase, dense and MoE (Fig. 1)
  anneal              constant LR + merging vs a cosine-annealed fork (Figs. 2-3)
  methods             SMA, WMA, EMA 0.1/0.2, schedule-derived weights (Fig. 4)
  interval-count      interval V and number N of merged checkpoints (Fig. 5)
  continued-training  PMA-init for continued training on WordNet glosses (Fig. 6)
  fine-tune           PMA-init for answers-only fine-tuning (Table 1, Fig. 7 left)
  spike               loss spikes and PMA-init (Fig. 7 right): spontaneous at a too-high
                      LR with logit monitors, and an induced LR x10 control
  mechanism           Hessian cross terms and the loss plane (section 4.6, Fig. 8)

options:
  --profile NAME   quick (default, 13 min on 2 idle cores plus ~10 for the spontaneous
                   spikes), standard (4x quick's tokens, 3 seeds: hours), full (wider
                   models, hours), micro (seconds, for tests)
  --seeds N        seeds of stable-merge, methods and interval-count (default: the
                   profile's; quick and micro 1, standard and full 3); the others use
                   seed 0 (spike's spontaneous arm has its own seeds)
  --dir DIR        lab folder: runs, merges, scores and the report (default ./pma-lab)
  --fresh          recompute everything instead of reusing what DIR holds
  --no-report      only compute (and cache) the results
  --json           print the results as JSON instead of a summary

examples:
  pma lab
  pma lab methods spike --profile micro --dir /tmp/pma-lab`;

export const command: Command = {
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        profile: { type: "string", default: "quick" },
        seeds: { type: "string" },
        dir: { type: "string", default: "pma-lab" },
        fresh: { type: "boolean", default: false },
        "no-report": { type: "boolean", default: false },
        json: { type: "boolean", default: false },
      },
      USAGE,
    );
    if (!(PROFILE_NAMES as readonly string[]).includes(values.profile))
      throw new PmaError("USAGE", `--profile must be one of ${PROFILE_NAMES.join(", ")}\n\n${USAGE}`);
    // Digits only: Number("") is 0 and Number("1e1") is 10, neither what was meant.
    if (values.seeds !== undefined && (!/^\d+$/.test(values.seeds) || Number(values.seeds) < 1))
      throw new PmaError(
        "USAGE",
        `--seeds must be a whole number >= 1, got ${JSON.stringify(values.seeds)}\n\n${USAGE}`,
      );
    const seeds = values.seeds === undefined ? {} : { seeds: Number(values.seeds) };
    let experiments: ExperimentId[];
    if (positionals.length === 0 || positionals.includes("all")) experiments = [...EXPERIMENT_IDS];
    else {
      for (const p of positionals) {
        if (!(EXPERIMENT_IDS as readonly string[]).includes(p))
          throw new PmaError("USAGE", `unknown experiment "${p}"\n\n${USAGE}`);
      }
      experiments = positionals as ExperimentId[];
    }
    const progress = labProgress(values.profile);
    const interrupt = interruptSignal();
    let result;
    try {
      result = await runLab({
        dir: values.dir,
        profile: values.profile as (typeof PROFILE_NAMES)[number],
        experiments,
        fresh: values.fresh,
        progress,
        signal: interrupt.signal,
        ...seeds,
      });
    } finally {
      progress.stop();
      interrupt.dispose();
    }
    if (interrupt.signal.aborted) {
      process.stderr.write(
        `pma lab: stopped; what finished is cached in ${resolve(result.dir)}, and a rerun continues from there\n`,
      );
      return 130;
    }
    const report = values["no-report"] ? null : await writeLabReport(result);
    if (values.json) process.stdout.write(JSON.stringify({ ...result, report }, null, 2) + "\n");
    else {
      const lines: string[] = [];
      for (const e of result.experiments) {
        lines.push(`${e.id} (${e.cached ? "cached" : `${e.seconds.toFixed(0)} s`}): ${e.title}`);
        for (const f of e.findings) lines.push(`  [${f.verdict}] ${f.claim}\n      ${f.measured}`);
      }
      for (const f of result.failed) lines.push(`${f.id}: FAILED: ${f.error}`);
      lines.push(
        `pma lab (${result.profile.name}) took ${result.seconds.toFixed(0)} s; folder ${resolve(result.dir)}`,
      );
      if (report !== null) lines.push(`report: ${resolve(report.dir, "index.html")}`);
      process.stdout.write(lines.join("\n") + "\n");
    }
    return result.failed.length > 0 ? 1 : 0;
  },
};
