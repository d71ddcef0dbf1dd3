import { PmaError } from "../common/errors.js";
import { formatTokens } from "../common/units.js";
import { parseCommandArgs, type Command } from "./command.js";
import { METHOD_OPTIONS, METHOD_USAGE, methodFromFlags, methodToFlags } from "./method-flags.js";
import { planFromFlags, RUN_OPTIONS, RUN_USAGE, type PlannedRun } from "./run-flags.js";

const usage = `usage: pma plan RUN --interval V [--count N] [options]

Chooses which checkpoints of a run to merge, the paper's way: the N checkpoints closest
to T, T-V, ..., T-(N-1)V tokens (T = the newest unless --at), and prints them with their
coefficients and the exact pma merge command. Checkpoints still being written are skipped.

options:
${RUN_USAGE}
${METHOD_USAGE}
  --json                print the plan as JSON

examples:
  pma plan runs/7b --interval 8B --count 10
  pma plan runs/7b --interval auto --method ema --alpha 0.2
  pma plan hf://allenai/OLMo-2-0425-1B --interval 50B --count 5     (Hub branches are the checkpoints)
  pma plan s3://bucket/runs/7b/ --interval 8B --tokens-per-step 4M
  pma merge --run runs/7b --interval 8B --count 10 --out merged     (runs the plan)`;

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      { ...RUN_OPTIONS, ...METHOD_OPTIONS, json: { type: "boolean" } },
      usage,
    );
    if (positionals.length !== 1)
      throw new PmaError(
        "USAGE",
        `give exactly one run (a directory, hf://owner/repo or s3://bucket/prefix/)\n\n${usage}`,
      );
    const method = methodFromFlags(values);
    const planned = await planFromFlags(positionals[0]!, values, method);
    if (values.json) {
      process.stdout.write(
        JSON.stringify(
          {
            ...planned.plan,
            basis: planned.basis,
            skipped: planned.scan.skipped,
            command: mergeCommand(planned),
          },
          null,
          2,
        ) + "\n",
      );
    } else {
      process.stdout.write(describePlan(planned));
    }
    return 0;
  },
};

function quote(s: string): string {
  return /^[\w./:=,+@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function mergeCommand(p: PlannedRun, out = "merged"): string {
  return [
    "pma",
    "merge",
    ...p.plan.selected.map((c) => c.path),
    "--out",
    out,
    "--keep-order",
    ...methodToFlags(p.plan.method),
  ]
    .map(quote)
    .join(" ");
}

export function describePlan(p: PlannedRun): string {
  const { plan, scan } = p;
  const rows = plan.selected.map((c) => [
    c.name,
    String(c.step),
    formatTokens(c.tokens),
    formatTokens(Math.max(0, c.target)),
    c.coefficient.toFixed(6),
  ]);
  const header = ["checkpoint", "step", "tokens", "target", "coefficient"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const out = [
    `${scan.dir}: ${scan.checkpoints.length} complete checkpoint(s)${scan.skipped.length ? `, ${scan.skipped.length} skipped` : ""}`,
    ...scan.skipped.map((s) => `  skipped ${s.path}: ${s.reason}`),
    ...p.basis.map((b) => `basis: ${b}`),
    `plan: N=${plan.count} checkpoints, V=${formatTokens(plan.interval)} tokens apart, ending at ${formatTokens(plan.at)} (tolerance ${formatTokens(plan.tolerance)}), method ${plan.method.method}`,
    ...plan.notes.map((n) => `note: ${n}`),
    line(header),
    ...rows.map(line),
    "",
    mergeCommand(p),
  ];
  return out.join("\n") + "\n";
}
