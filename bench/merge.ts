import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { writeSyntheticRun, type SyntheticModel } from "../src/trajectory/synthetic.js";

/**
 * `npm run bench:merge`: times `pma merge` against the I/O limit of the same merge,
 * measured in the same run: reading every input (`cat` to /dev/null) plus writing and
 * fsyncing one output-sized file (`cp` of an input, then `sync` of that file). Each
 * round runs, in turn, cat, cp + sync, pma merge with default settings (float64
 * accumulation) and pma merge --accumulate f32, so load drift on the machine hits all
 * of them alike; ratios are taken round by round and their medians printed, with the
 * load average before and after every round. The load-everything baseline runs once.
 * `--big` instead merges 3 checkpoints whose total exceeds RAM, to show memory stays
 * bounded when inputs cannot all be cached.
 */
const { values } = parseArgs({
  options: {
    dir: { type: "string", default: "bench-data" },
    checkpoints: { type: "string", default: "10" },
    "gib-per-checkpoint": { type: "string", default: "1" },
    big: { type: "boolean", default: false },
    "skip-baseline": { type: "boolean", default: false },
    "skip-f32": { type: "boolean", default: false },
    runs: { type: "string", default: "5" },
    "generate-only": { type: "boolean", default: false },
  },
});
const big = values.big ?? false;
const count = big ? 3 : Number(values.checkpoints);
const gib = big ? 9 : Number(values["gib-per-checkpoint"]);
const runs = Number(values.runs);

// Llama-like shapes: d_model 2048, SwiGLU 5632, vocab 32000; layers scale the size.
const perLayer = 4 * 2048 * 2048 + 3 * 2048 * 5632 + 2 * 2048;
const fixed = 2 * 32000 * 2048 + 2048;
const layers = Math.max(1, Math.round((gib * 2 ** 30) / 2 / perLayer - fixed / perLayer));
const model: SyntheticModel = { hiddenSize: 2048, intermediateSize: 5632, layers, vocabSize: 32000, heads: 16 };
const dataDir = resolve(values.dir!);
const runDir = join(dataDir, `run-${count}x${layers}L-bf16`);
const root = resolve(new URL("../..", import.meta.url).pathname);
const pma = join(root, "dist/src/cli/main.js");

if (!existsSync(join(runDir, ".complete"))) {
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  process.stderr.write(`generating ${count} bf16 checkpoints of ${layers} layers (~${gib} GiB each) in ${runDir} ...\n`);
  await writeSyntheticRun({ dir: runDir, model, checkpoints: count, stepInterval: 1000, tokensPerStep: 4 << 20, dtype: "BF16" });
  writeFileSync(join(runDir, ".complete"), "");
}
if (values["generate-only"]) process.exit(0);
const inputs = Array.from({ length: count }, (_, i) => join(runDir, `checkpoint-${(i + 1) * 1000}`));
const files = inputs.map((d) => join(d, "model.safetensors"));
const inputBytes = files.reduce((s, f) => s + statSync(f).size, 0);
// The merged bf16 model is as large as one input: the limit writes that many bytes.
const outputBytes = statSync(files[files.length - 1]!).size;

interface Timing {
  seconds: number;
  maxRssKiB: number | null;
}

/** Runs a command under GNU time for wall time and peak RSS. */
function timed(cmd: string, args: string[]): Timing {
  const hasTime = existsSync("/usr/bin/time");
  const t0 = process.hrtime.bigint();
  const r = hasTime
    ? spawnSync("/usr/bin/time", ["-f", "%M", cmd, ...args], { encoding: "utf8", maxBuffer: 1 << 26 })
    : spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 26 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr}`);
  const rss = hasTime ? Number(r.stderr.trim().split("\n").pop()) : NaN;
  return { seconds, maxRssKiB: Number.isFinite(rss) ? rss : null };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const quote = (p: string) => `'${p.replaceAll("'", "'\\''")}'`;
const out = join(dataDir, "merged");
const copyOut = join(dataDir, "limit-copy.safetensors");
const rows = ["cat", "cp + sync", "pma merge", "pma merge --accumulate f32", "load-everything baseline"] as const;
type Row = (typeof rows)[number];
const results = new Map<Row, Timing[]>(rows.map((r) => [r, []]));
const loads: string[] = [];
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
const mergeRun = (extra: string[]) => {
  rmSync(out, { recursive: true, force: true });
  const t = timed(process.execPath, [pma, "merge", ...inputs, "--out", out, "--force", ...extra]);
  rmSync(out, { recursive: true, force: true });
  return t;
};
for (let r = 0; r < runs; r++) {
  const before = load();
  results.get("cat")!.push(timed("sh", ["-c", `cat ${files.map(quote).join(" ")} > /dev/null`]));
  rmSync(copyOut, { force: true });
  results.get("cp + sync")!.push(timed("sh", ["-c", `cp ${quote(files[files.length - 1]!)} ${quote(copyOut)} && sync ${quote(copyOut)}`]));
  rmSync(copyOut, { force: true });
  results.get("pma merge")!.push(mergeRun([]));
  if (!values["skip-f32"]) results.get("pma merge --accumulate f32")!.push(mergeRun(["--accumulate", "f32"]));
  // Once: it takes 10-100x longer and is here for contrast, not for a ratio.
  if (r === 0 && !big && !values["skip-baseline"]) {
    const baselineOut = join(dataDir, "baseline.safetensors");
    results.get("load-everything baseline")!.push(timed(process.execPath, [join(root, "dist/bench/merge-baseline.js"), baselineOut, ...inputs]));
    rmSync(baselineOut, { force: true });
  }
  loads.push(`round ${r + 1}: load average ${before} -> ${load()}`);
}

const GiB = 2 ** 30;
const seconds = (row: Row) => results.get(row)!.map((t) => t.seconds);
const cat = seconds("cat");
const limit = cat.map((c, i) => c + seconds("cp + sync")[i]!);
/** Median over rounds of this row's time divided by the yardstick's time in the same round. */
const pairedRatio = (row: Row, yardstick: number[]) => median(seconds(row).map((s, i) => s / yardstick[i]!));
const mem = execFileSync("sh", ["-c", "free -g | awk '/Mem:/ {print $2}'"], { encoding: "utf8" }).trim();
console.log(
  `inputs: ${count} x bf16 checkpoints, ${(inputBytes / GiB).toFixed(2)} GiB in total, output ${(outputBytes / GiB).toFixed(2)} GiB; machine RAM ${mem} GiB; ${runs} round(s), medians`,
);
console.log("| command | seconds | input GiB/s | time / cat | time / limit | peak RSS MiB |");
console.log("|---|---|---|---|---|---|");
console.log(`| limit: cat + cp + sync | ${median(limit).toFixed(2)} | ${(inputBytes / GiB / median(limit)).toFixed(2)} | ${median(limit.map((l, i) => l / cat[i]!)).toFixed(2)} | 1.00 | |`);
for (const row of rows) {
  const ts = results.get(row)!;
  if (ts.length === 0) continue;
  const s = median(ts.map((t) => t.seconds));
  const rss = ts.map((t) => t.maxRssKiB).filter((x): x is number => x !== null);
  const vsLimit = ts.length === runs ? pairedRatio(row, limit).toFixed(2) : (s / median(limit)).toFixed(2);
  const vsCat = ts.length === runs ? pairedRatio(row, cat).toFixed(2) : (s / median(cat)).toFixed(2);
  console.log(`| ${row} | ${s.toFixed(2)} | ${(inputBytes / GiB / s).toFixed(2)} | ${vsCat} | ${vsLimit} | ${rss.length ? (Math.max(...rss) / 1024).toFixed(0) : "n/a"} |`);
}
if (!values["skip-f32"]) {
  const f64 = seconds("pma merge");
  const f32 = seconds("pma merge --accumulate f32");
  console.log(`float64 accumulation (the default) / float32, paired by round: ${median(f64.map((s, i) => s / f32[i]!)).toFixed(3)} (rounds: ${f64.map((s, i) => (s / f32[i]!).toFixed(2)).join(" ")})`);
}
console.log(`merge / limit by round: ${seconds("pma merge").map((s, i) => (s / limit[i]!).toFixed(2)).join(" ")}`);
for (const l of loads) console.log(l);
const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
console.log(`machine: ${cpu}, ${execFileSync("nproc", { encoding: "utf8" }).trim()} cores`);
