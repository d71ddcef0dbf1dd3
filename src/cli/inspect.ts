import { PmaError } from "../common/errors.js";
import { inspectCheckpoint, type CheckpointSummary } from "../formats/inspect.js";
import { parseCommandArgs, type Command } from "./command.js";

const usage = `usage: pma inspect PATH [--stats] [--json]

Lists a checkpoint's tensors (dtype, shape, parameters, bytes), totals and metadata.
PATH is a .safetensors file or a checkpoint folder (single file or sharded), or a
.gguf file (tensors with their ggml type and torch-order shape; metadata keys with
their GGUF types, arrays shown by element type and length).

options:
  --stats   also compute per-tensor min/max/mean/std and NaN/Inf counts (reads all data)
  --json    print the summary as JSON

example:
  pma inspect run/checkpoint-1000 --stats`;

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      { stats: { type: "boolean" }, json: { type: "boolean" } },
      usage,
    );
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
  // GGUF tensors may be quantized, so their bytes do not follow from params and dtype.
  const withBytes = s.format === "gguf";
  const rows = s.tensors.map((t) => {
    const base = [
      t.name,
      t.dtype,
      `[${t.shape.join(", ")}]`,
      t.parameters.toLocaleString("en-US"),
      ...(withBytes ? [t.bytes.toLocaleString("en-US")] : []),
    ];
    if (!withStats) return base;
    const st = t.stats;
    return st === undefined
      ? [...base, "", "", "", "", ""]
      : [
          ...base,
          num(st.min),
          num(st.max),
          num(st.mean),
          num(st.std),
          String(st.nan + st.posInf + st.negInf),
        ];
  });
  const header = [
    "tensor",
    "dtype",
    "shape",
    "params",
    ...(withBytes ? ["bytes"] : []),
    ...(withStats ? ["min", "max", "mean", "std", "nan/inf"] : []),
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === 0 || i === 1 || i === 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ");
  const dtypes = Object.entries(s.dtypes)
    .map(([d, n]) => `${d} ${n.toLocaleString("en-US")}`)
    .join(", ");
  const format =
    s.gguf !== undefined
      ? `GGUF v${s.gguf.version} (alignment ${s.gguf.alignment})`
      : s.dcp !== undefined
        ? `distributed checkpoint (${s.dcp.layout} layout${s.dcp.version !== null ? `, version ${s.dcp.version}` : ""}, ${s.dcp.chunks} chunks)`
        : s.format;
  const out = [
    `${s.path}: ${format}, ${s.files.length} file(s), ${s.tensors.length} tensors`,
    line(header),
    ...rows.map(line),
    `total: ${s.parameters.toLocaleString("en-US")} parameters, ${s.bytes.toLocaleString("en-US")} bytes (${(s.bytes / 2 ** 20).toFixed(2)} MiB); by dtype: ${dtypes}`,
    ...(s.gguf !== undefined
      ? ggufMetadataLines(s)
      : s.dcp !== undefined
        ? dcpLines(s.dcp)
        : [`metadata: ${JSON.stringify(s.metadata)}`]),
  ];
  return out.join("\n") + "\n";
}

function dcpLines(d: NonNullable<CheckpointSummary["dcp"]>): string[] {
  const progress =
    d.tokens !== null || d.step !== null
      ? [
          `progress: ${d.step !== null ? `step ${d.step}` : ""}${d.tokens !== null ? `, ${d.tokens.toLocaleString("en-US")} tokens` : ""} (from ${d.progressFrom})`,
        ]
      : [];
  const items = Object.entries(d.items).map(([k, v]) => {
    const shown = JSON.stringify(v);
    return `  ${k}  ${shown.length > 80 ? `${shown.slice(0, 77)}...` : shown}`;
  });
  return [...progress, `non-tensor items: ${items.length}`, ...items];
}

/** One line per key: `key  type  value`, arrays as `array<type>[length]` and a preview. */
function ggufMetadataLines(s: CheckpointSummary): string[] {
  const keys = s.gguf?.keys ?? [];
  const width = Math.max(0, ...keys.map((k) => k.key.length));
  const lines = keys.map((k) => {
    if (k.type !== "array") {
      const value =
        typeof k.value === "string" && k.type === "string" ? JSON.stringify(k.value) : String(k.value);
      return `  ${k.key.padEnd(width)}  ${k.type} ${value.length > 80 ? `${value.slice(0, 77)}...` : value}`;
    }
    const preview = (k.preview ?? []).map((x) => JSON.stringify(x)).join(", ");
    const more = (k.length ?? 0) > (k.preview?.length ?? 0) ? ", ..." : "";
    const shown = `[${preview}${more}]`;
    return `  ${k.key.padEnd(width)}  array<${k.elementType}>[${k.length}] ${shown.length > 80 ? `${shown.slice(0, 77)}...` : shown}`;
  });
  return [`metadata: ${keys.length} keys`, ...lines];
}
