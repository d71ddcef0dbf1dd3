import { PmaError } from "../common/errors.js";
import { explainInit } from "../trajectory/init-explain.js";
import { defaultInitOut, pmaInit } from "../trajectory/init.js";
import { parseCommandArgs, type Command } from "./command.js";
import { DISCOVER_OPTIONS, DISCOVER_USAGE, discoverFromFlags, intFlag } from "./discover-flags.js";
import { interruptSignal } from "./interrupt.js";
import { INIT_OPTIONS, initFromFlags, MERGE_RUN_OPTIONS, mergeRunFromFlags } from "./merge-flags.js";
import { METHOD_OPTIONS, METHOD_USAGE, methodFromFlags } from "./method-flags.js";
import { byteProgress } from "./progress.js";

const usage = `usage: pma init RUN [--before STEP|auto] [--count 3] [--method sma] [--out DIR] [options]

PMA-init (paper section 4.5): restarts a run that hit a loss spike from the merge of
the checkpoints saved before it. Finds the spike in the run's log (pma log.jsonl,
TensorBoard events, trainer_state.json or CSV), merges the N newest complete checkpoints
from before it, and writes DIR/checkpoint-<S>: the merged weights plus the trainer
state of the latest of them (step S), so training resumes at step S from the merge.

options:
  --before STEP|auto    restart from checkpoints strictly before STEP; auto (default) finds
                        the newest spike the run did not recover from in its log
  --count N             checkpoints to merge (default 3, as in the paper)
${METHOD_USAGE}
  --activate            Megatron-LM runs: also point DIR/latest_checkpointed_iteration.txt at
                        the new iter_XXXXXXX (without it the tracker file is left alone)
  --optimizer O         latest (default): keep the latest healthy checkpoint's optimizer
                        moments and scheduler (an approximation: they were accumulated on
                        its own weights); reset: leave out optimizer and scheduler state
                        (a Hugging Face Trainer loads them only as a pair, so its LR
                        schedule restarts from the first step, warmup included)
  --out DIR             the restarted run's directory (default RUN-pma-init); the checkpoint
                        is DIR/checkpoint-<S>
  --margin STEPS        keep this many steps clear of the last healthy logged loss (default 1:
                        a loss logged at step s measures the weights of step s-1)
  --log PATH            the training log, when it is not in RUN
  --loss-key NAME       the training loss's TensorBoard tag, CSV column or log_history key,
                        when pma does not recognise its name (docs/logs.md lists those it does)
${DISCOVER_USAGE}
  --accumulate P        f64 (default; exact: identical inputs merge to themselves) | f32
  --threads N           merge worker threads (default: all cores)
  --force               replace an existing DIR/checkpoint-<S>
  --json                print the record (also written as pma_init.json) as JSON

For a pma training run the checkpoint also gets pma's optimizer state (the moments of
step S, or zeros with --optimizer reset: a fresh AdamW) and DIR/log.jsonl starts with the
run's log up to step S; for a Hugging Face Trainer run, trainer_state.json, scheduler,
RNG and training_args files of step S are copied (optimizer.pt only with latest).

resume:
  pma train --resume DIR/checkpoint-<S>          (continues in DIR)
  Hugging Face: trainer.train(resume_from_checkpoint="DIR/checkpoint-<S>")

examples:
  pma init runs/7b --out runs/7b-restart
  pma init runs/7b --before 12000 --count 3 --method ema --alpha 0.2 --optimizer reset`;

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        ...METHOD_OPTIONS,
        ...DISCOVER_OPTIONS,
        before: { type: "string" },
        count: { type: "string" },
        ...INIT_OPTIONS,
        ...MERGE_RUN_OPTIONS,
        out: { type: "string", short: "o" },
        force: { type: "boolean" },
        json: { type: "boolean" },
      },
      usage,
    );
    if (positionals.length !== 1) throw new PmaError("USAGE", `give exactly one run directory\n\n${usage}`);
    const run = positionals[0]!;
    const method = methodFromFlags(values);
    const init = initFromFlags(values);
    const mergeRun = mergeRunFromFlags(values);
    const before =
      values.before === undefined || values.before === "auto"
        ? undefined
        : intFlag(values.before, "--before", 1);
    const progress = byteProgress("merge");
    const interrupt = interruptSignal();
    try {
      const record = await pmaInit({
        run,
        out: values.out ?? defaultInitOut(run),
        ...(before !== undefined ? { before } : {}),
        count: values.count === undefined ? 3 : intFlag(values.count, "--count", 1),
        method,
        ...init,
        force: values.force ?? false,
        discover: discoverFromFlags(values),
        ...mergeRun,
        onProgress: (done, total) => progress.update(done, total),
        signal: interrupt.signal,
      });
      progress.stop();
      process.stdout.write(values.json ? JSON.stringify(record, null, 2) + "\n" : explainInit(record));
    } finally {
      progress.stop();
      interrupt.dispose();
    }
    return 0;
  },
};
