import { PmaError } from "../common/errors.js";
import { inspectCheckpoint, type CheckpointSummary } from "../formats/inspect.js";
import { parseCommandArgs, type Command } from "./command.js";

const usage = `usage: pma inspect PATH [--stats] [--json]

Lists a checkpoint's tensors (dtype, shape, parameters, bytes), totals and metadata.
PATH is a .safetensors file or a checkpoint folder (single file or sharded).

options:
  --stats   also compute per-tensor min/max/mean/std and NaN/Inf counts (reads all data)
  --json    print the summary as JSON

example:
  pma inspect run/checkpoint-1000 --stats`;

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, { stats: { type: "boolean" }, json: { type: "boolean" } }, usage);
    if (positionals.length !== 1) throw new PmaError("USAGE", `give exactly one checkpoint\n\n${usage}`);
    const summary = await inspectCheckpoint(positionals[0]!, { stats: values.stats ?? false });
    process.stdout.write(values.json ? JSON.stringify(summary, null, 2) + "\n" : formatSummary(summary));
    return 0;
  },
};

function num(x: number): string {
  if (Number.isNaN(x)) return "-";
  return Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(3) : x.toFixed(5);
}

export function formatSummary(s: CheckpointSummary): string {
  const withStats = s.tensors.some((t) => t.stats !== undefined);
  const rows = s.tensors.map((t) => {
    const base = [t.name, t.dtype, `[${t.shape.join(", ")}]`, t.parameters.toLocaleString("en-US")];
    if (!withStats) return base;
    const st = t.stats;
    return st === undefined
      ? [...base, "", "", "", "", ""]
      : [...base, num(st.min), num(st.max), num(st.mean), num(st.std), String(st.nan + st.posInf + st.negInf)];
  });
  const header = ["tensor", "dtype", "shape", "params", ...(withStats ? ["min", "max", "mean", "std", "nan/inf"] : [])];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 || i === 1 || i === 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const dtypes = Object.entries(s.dtypes).map(([d, n]) => `${d} ${n.toLocaleString("en-US")}`).join(", ");
  const out = [
    `${s.path}: ${s.format}, ${s.files.length} file(s), ${s.tensors.length} tensors`,
    line(header),
    ...rows.map(line),
    `total: ${s.parameters.toLocaleString("en-US")} parameters, ${s.bytes.toLocaleString("en-US")} bytes (${(s.bytes / 2 ** 20).toFixed(2)} MiB); by dtype: ${dtypes}`,
    `metadata: ${JSON.stringify(s.metadata)}`,
  ];
  return out.join("\n") + "\n";
}
