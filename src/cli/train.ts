import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { PmaError } from "../common/errors.js";
import { parseTokens } from "../common/units.js";
import { tokensPerStep } from "../train/config.js";
import { train, type TrainEvent, type TrainResult } from "../train/loop.js";
import { parseCommandArgs, type Command } from "./command.js";
import { interruptSignal } from "./interrupt.js";
import { trainProgress } from "./train-progress.js";

const DEFAULT_OUT = "pma-run";

const usage = `usage: pma train [--config run.yaml] [--out DIR] [options]
       pma train --resume CKPT [--out DIR] [options]

Trains a Llama-style dense or Mixtral-style MoE model on the Brown corpus, writing
checkpoint-<step>/ folders (Hugging Face layout + pma's optimizer state) and
log.jsonl (one line per step and per evaluation) into the run directory. Every config
field has a default: \`pma train --out run\` trains the lab's small dense model.

Ctrl-C finishes the current step, writes a checkpoint and exits; resume it with
\`pma train --resume run\`.

options:
  --config FILE         YAML with sections model, optimizer, schedule, data, training,
                        eval, checkpointing, log (see docs/training.md)
  --out DIR             run directory (new, or empty; --force replaces it); default
                        ./${DEFAULT_OUT} for a new run
  --resume CKPT         continue from a checkpoint folder, or a run directory's latest
                        checkpoint. Same schedule: continues bit-identically, by default
                        in the checkpoint's own run. A new schedule/optimizer (--config
                        or --schedule) is a fork, starting at the checkpoint's tokens,
                        and needs --out
  --weights-only        with --resume: a fresh optimizer (step and data position continue
                        when the checkpoint has pma state, else start at 0)
  --optimizer-from CKPT with --resume: optimizer, step, data position and config from
                        this pma checkpoint, weights from --resume (e.g. a merge: PMA-init)
  --schedule SPEC       schedule section inline, YAML or JSON, e.g.
                        '{kind: wsd, lr: 3e-3, decay_tokens: 400k, stable_tokens: 0}'
  --max-tokens N        training.max_tokens (e.g. 4M)
  --backend NAME        training.backend: auto | blas | wasm | js
  --dtype D             checkpointing.dtype: f32 | bf16
  --force               replace a non-empty --out
  --json                print the result as JSON

examples:
  pma train --out run
  pma train --config moe.yaml --out run-moe --max-tokens 2M
  pma train --resume run/checkpoint-500 --out run-anneal --schedule '{kind: wsd, stable_tokens: 0, decay_tokens: 800k}'
  pma train --resume merged --optimizer-from run/checkpoint-900 --out run-pma-init`;

function parseInline(text: string, flag: string): unknown {
  try {
    return parseYaml(text);
  } catch (e) {
    throw new PmaError("USAGE", `${flag}: not valid YAML/JSON: ${(e as Error).message}`);
  }
}

function section(o: Record<string, unknown>, name: string): Record<string, unknown> {
  const s = o[name];
  if (s === undefined || s === null) return (o[name] = {}) as Record<string, unknown>;
  if (typeof s !== "object" || Array.isArray(s))
    throw new PmaError("CONFIG_INVALID", `${name} must be a mapping of fields`);
  return s as Record<string, unknown>;
}

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        config: { type: "string", short: "c" },
        out: { type: "string", short: "o" },
        resume: { type: "string" },
        "weights-only": { type: "boolean" },
        "optimizer-from": { type: "string" },
        schedule: { type: "string" },
        "max-tokens": { type: "string" },
        backend: { type: "string" },
        dtype: { type: "string" },
        force: { type: "boolean" },
        json: { type: "boolean" },
      },
      usage,
    );
    if (positionals.length > 0)
      throw new PmaError("USAGE", `unexpected argument '${positionals[0]}'\n\n${usage}`);
    // A new run without --out goes to ./pma-run (refused if that holds another run).
    const out = values.out ?? (values.resume === undefined ? DEFAULT_OUT : undefined);

    let overlay: Record<string, unknown> = {};
    let source = "command-line flags";
    if (values.config !== undefined) {
      let text: string;
      try {
        text = await readFile(values.config, "utf8");
      } catch (e) {
        throw new PmaError("IO", `${values.config}: cannot read (${(e as Error).message})`, {
          file: values.config,
        });
      }
      let doc: unknown;
      try {
        doc = parseYaml(text);
      } catch (e) {
        throw new PmaError("CONFIG_INVALID", `${values.config}: not valid YAML: ${(e as Error).message}`);
      }
      if (doc !== null && doc !== undefined && (typeof doc !== "object" || Array.isArray(doc))) {
        throw new PmaError(
          "CONFIG_INVALID",
          `${values.config}: must be a mapping of sections (model, optimizer, schedule, ...)`,
        );
      }
      overlay = (doc ?? {}) as Record<string, unknown>;
      source = values.config;
    }
    // Flags override the file, field by field.
    if (values.schedule !== undefined)
      overlay["schedule"] = {
        ...section(overlay, "schedule"),
        ...(parseInline(values.schedule, "--schedule") as object),
      };
    if (values["max-tokens"] !== undefined)
      section(overlay, "training")["max_tokens"] = parseTokens(values["max-tokens"], "--max-tokens");
    if (values.backend !== undefined) section(overlay, "training")["backend"] = values.backend;
    if (values.dtype !== undefined) section(overlay, "checkpointing")["dtype"] = values.dtype.toLowerCase();
    if (
      values.config !== undefined &&
      (values.schedule ?? values["max-tokens"] ?? values.backend ?? values.dtype) !== undefined
    ) {
      source = `${values.config} with command-line flags`;
    }

    const progress = values.json === true ? { onEvent() {}, stop() {} } : trainProgress();
    const interrupt = interruptSignal();
    let result: TrainResult;
    try {
      result = await train({
        config: overlay,
        configSource: source,
        ...(out !== undefined ? { out } : {}),
        ...(values.resume !== undefined ? { resume: values.resume } : {}),
        ...(values["optimizer-from"] !== undefined ? { optimizerFrom: values["optimizer-from"] } : {}),
        weightsOnly: values["weights-only"] ?? false,
        force: values.force ?? false,
        signal: interrupt.signal,
        onEvent: (e) => {
          if (e.type === "start" && values.json !== true) {
            progress.stop();
            process.stderr.write(describeStart(e));
          }
          progress.onEvent(e);
        },
      });
    } finally {
      progress.stop();
      interrupt.dispose();
    }
    if (values.json === true) {
      const { config: _config, ...rest } = result;
      process.stdout.write(
        JSON.stringify({ ...rest, tokensPerStep: tokensPerStep(result.config) }, null, 2) + "\n",
      );
    } else {
      process.stdout.write(describeResult(result));
    }
    return 0;
  },
};

function describeStart(e: Extract<TrainEvent, { type: "start" }>): string {
  const c = e.config;
  const kind =
    c.model.preset === "moe"
      ? `MoE (${c.model.num_local_experts} experts, top-${c.model.num_experts_per_tok})`
      : "dense";
  const from =
    e.plan.stateFrom !== null || e.plan.weightsFrom !== null
      ? `${e.plan.fork ? "fork" : "resume"} at step ${e.step} (${e.tokens} tokens) from ${e.plan.weightsFrom}${e.plan.stateFrom !== null && e.plan.stateFrom.dir !== e.plan.weightsFrom ? ` with the optimizer of ${e.plan.stateFrom.dir}` : ""}${e.plan.freshOptimizer ? ", fresh optimizer" : ""}\n`
      : "";
  return (
    from +
    `training a ${kind} model of ${e.parameters.toLocaleString("en-US")} parameters on ${c.data.corpus}, ${tokensPerStep(c)} tokens/step ` +
    `(${c.data.micro_batch} x ${c.data.seq_len} x ${c.data.grad_accum}), to ${c.training.max_tokens} tokens (${e.maxSteps} steps), ${c.schedule.kind} schedule, lr ${c.schedule.lr}\n` +
    `${e.backend}\nrun: ${e.runDir}\n`
  );
}

export function describeResult(r: TrainResult): string {
  const lines: string[] = [];
  const latest = r.checkpoints.at(-1);
  if (r.interrupted)
    lines.push(
      `interrupted at step ${r.step} (${r.tokens} tokens)${latest !== undefined ? `: saved ${latest}` : ""}; continue with: pma train --resume ${r.runDir}`,
    );
  else
    lines.push(
      `trained to step ${r.step} (${r.tokens} tokens)${Number.isFinite(r.lastLoss) ? `: loss ${r.lastLoss.toFixed(4)}` : ""}${r.lastValLoss !== null ? `, val_loss ${r.lastValLoss.toFixed(4)}` : ""}`,
    );
  if (r.trainSeconds > 0)
    lines.push(
      `${r.tokensPerSecond.toFixed(0)} tokens/s over ${r.trainSeconds.toFixed(1)} s of training steps`,
    );
  lines.push(
    `${r.checkpoints.length} checkpoint(s) written in ${r.runDir}${latest !== undefined ? `, latest ${latest}` : ""}`,
  );
  return lines.join("\n") + "\n";
}
