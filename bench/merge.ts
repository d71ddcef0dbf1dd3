import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { writeSyntheticDcp, type SyntheticTensor } from "../src/formats/dcp/synthetic-writer.js";
import { writeSyntheticRun, type SyntheticModel } from "../src/trajectory/synthetic.js";

/**
 * `npm run bench:merge`: times `pma merge` against the I/O limit of the same merge,
 * measured in the same run: reading every input (`cat` to /dev/null) plus writing and
 * fsyncing one output-sized file (`cat` of the newest input into a file, then `sync`). Each
 * round runs, in turn, cat, write + sync, pma merge with default settings (float64
 * accumulation) and pma merge --accumulate f32, so load drift on the machine hits all
 * of them alike; ratios are taken round by round and their medians printed, with the
 * load average before and after every round. The load-everything baseline runs once.
 * `--big` instead merges 3 checkpoints whose total exceeds RAM, to show memory stays
 * bounded when inputs cannot all be cached. `--format dcp` measures the same on
 * torchtitan-style DCP checkpoints (the limit writes the newest input's .distcp files).
 * `--source s3` compares the same merge read from a loopback S3 server with local disk.
 * `--part 1,2,4` runs the merge as N concurrent `--part I/N` processes of
 * `--part-threads` threads each (default 1, one process per node of a cluster) plus
 * `--finalize`, and prints wall time, aggregate and per-process input rates.
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
    part: { type: "string" },
    "part-threads": { type: "string", default: "1" },
    source: { type: "string", default: "local" },
    format: { type: "string", default: "safetensors" },
  },
});
const dcp = values.format === "dcp";
if (values.format !== "safetensors" && !dcp)
  throw new Error(`--format must be safetensors or dcp (got ${values.format})`);
if (dcp && values.source !== "local") throw new Error("--format dcp is measured on local disk only");
if (values.source !== "local" && values.source !== "s3")
  throw new Error(`--source is local or s3, not ${values.source}`);
const big = values.big ?? false;
const count = big ? 3 : Number(values.checkpoints);
const gib = big ? 9 : Number(values["gib-per-checkpoint"]);
const runs = Number(values.runs);

// Llama-like shapes: d_model 2048, SwiGLU 5632, vocab 32000; layers scale the size.
const perLayer = 4 * 2048 * 2048 + 3 * 2048 * 5632 + 2 * 2048;
const fixed = 2 * 32000 * 2048 + 2048;
const layers = Math.max(1, Math.round((gib * 2 ** 30) / 2 / perLayer - fixed / perLayer));
const model: SyntheticModel = {
  hiddenSize: 2048,
  intermediateSize: 5632,
  layers,
  vocabSize: 32000,
  heads: 16,
};
const dataDir = resolve(values.dir!);
const runDir = join(dataDir, `run-${dcp ? "dcp-" : ""}${count}x${layers}L-bf16`);
const root = resolve(new URL("../..", import.meta.url).pathname);
const pma = join(root, "dist/src/cli/main.js");

if (!existsSync(join(runDir, ".complete"))) {
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  process.stderr.write(
    `generating ${count} bf16 checkpoints of ${layers} layers (~${gib} GiB each) in ${runDir} ...\n`,
  );
  if (dcp) writeDcpRun(runDir, model, count);
  else
    await writeSyntheticRun({
      dir: runDir,
      model,
      checkpoints: count,
      stepInterval: 1000,
      tokensPerStep: 4 << 20,
      dtype: "BF16",
    });
  writeFileSync(join(runDir, ".complete"), "");
}
if (values["generate-only"]) process.exit(0);
const inputs = Array.from({ length: count }, (_, i) =>
  join(runDir, dcp ? `step-${(i + 1) * 1000}` : `checkpoint-${(i + 1) * 1000}`),
);
const files = dcp
  ? inputs.flatMap((d) =>
      readdirSync(d)
        .filter((f) => f.endsWith(".distcp"))
        .map((f) => join(d, f)),
    )
  : inputs.map((d) => join(d, "model.safetensors"));
const inputBytes = files.reduce((s, f) => s + statSync(f).size, 0);
// The merged bf16 model is as large as one input: the limit writes that many bytes.
const outputBytes = files
  .filter((f) => f.startsWith(inputs[inputs.length - 1]! + "/"))
  .reduce((s, f) => s + statSync(f).size, 0);

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

if (values.part !== undefined) {
  await benchParts(values.part.split(",").map(Number), Number(values["part-threads"]));
  process.exit(0);
}

const quote = (p: string) => `'${p.replaceAll("'", "'\\''")}'`;
const out = join(dataDir, "merged");
if (values.source === "s3") {
  await benchS3();
  process.exit(0);
}
const copyOut = join(dataDir, "limit-copy");
// The limit writes one checkpoint: the newest input's files (one file, or a DCP folder's .distcp files).
const newestFiles = files.filter((f) => f.startsWith(inputs[inputs.length - 1]! + "/"));
const rows = [
  "cat",
  "write + sync",
  "pma merge",
  "pma merge --accumulate f32",
  "load-everything baseline",
] as const;
type Row = (typeof rows)[number];
const results = new Map<Row, Timing[]>(rows.map((r) => [r, []]));
const loads: string[] = [];
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
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
  results
    .get("write + sync")!
    .push(
      timed("sh", [
        "-c",
        `cat ${newestFiles.map(quote).join(" ")} > ${quote(copyOut)} && sync ${quote(copyOut)}`,
      ]),
    );
  rmSync(copyOut, { force: true });
  results.get("pma merge")!.push(mergeRun([]));
  if (!values["skip-f32"]) results.get("pma merge --accumulate f32")!.push(mergeRun(["--accumulate", "f32"]));
  // Once: it takes 10-100x longer and is here for contrast, not for a ratio.
  if (r === 0 && !big && !dcp && !values["skip-baseline"]) {
    const baselineOut = join(dataDir, "baseline.safetensors");
    results
      .get("load-everything baseline")!
      .push(timed(process.execPath, [join(root, "dist/bench/merge-baseline.js"), baselineOut, ...inputs]));
    rmSync(baselineOut, { force: true });
  }
  loads.push(`round ${r + 1}: load average ${before} -> ${load()}`);
}

const GiB = 2 ** 30;
const seconds = (row: Row) => results.get(row)!.map((t) => t.seconds);
const cat = seconds("cat");
const limit = cat.map((c, i) => c + seconds("write + sync")[i]!);
/** Median over rounds of this row's time divided by the yardstick's time in the same round. */
const pairedRatio = (row: Row, yardstick: number[]) => median(seconds(row).map((s, i) => s / yardstick[i]!));
const mem = execFileSync("sh", ["-c", "free -g | awk '/Mem:/ {print $2}'"], { encoding: "utf8" }).trim();
if (dcp)
  console.log(
    "format: torch.distributed.checkpoint (2 ranks); the limit writes and fsyncs the newest checkpoint's .distcp files",
  );
console.log(
  `inputs: ${count} x bf16 checkpoints, ${(inputBytes / GiB).toFixed(2)} GiB in total, output ${(outputBytes / GiB).toFixed(2)} GiB; machine RAM ${mem} GiB; ${runs} round(s), medians`,
);
console.log("| command | seconds | input GiB/s | time / cat | time / limit | peak RSS MiB |");
console.log("|---|---|---|---|---|---|");
console.log(
  `| limit: cat + write + sync | ${median(limit).toFixed(2)} | ${(inputBytes / GiB / median(limit)).toFixed(2)} | ${median(limit.map((l, i) => l / cat[i]!)).toFixed(2)} | 1.00 | |`,
);
for (const row of rows) {
  const ts = results.get(row)!;
  if (ts.length === 0) continue;
  const s = median(ts.map((t) => t.seconds));
  const rss = ts.map((t) => t.maxRssKiB).filter((x): x is number => x !== null);
  const vsLimit = ts.length === runs ? pairedRatio(row, limit).toFixed(2) : (s / median(limit)).toFixed(2);
  const vsCat = ts.length === runs ? pairedRatio(row, cat).toFixed(2) : (s / median(cat)).toFixed(2);
  console.log(
    `| ${row} | ${s.toFixed(2)} | ${(inputBytes / GiB / s).toFixed(2)} | ${vsCat} | ${vsLimit} | ${rss.length ? (Math.max(...rss) / 1024).toFixed(0) : "n/a"} |`,
  );
}
if (!values["skip-f32"]) {
  const f64 = seconds("pma merge");
  const f32 = seconds("pma merge --accumulate f32");
  console.log(
    `float64 accumulation (the default) / float32, paired by round: ${median(f64.map((s, i) => s / f32[i]!)).toFixed(3)} (rounds: ${f64.map((s, i) => (s / f32[i]!).toFixed(2)).join(" ")})`,
  );
}
console.log(
  `merge / limit by round: ${seconds("pma merge")
    .map((s, i) => (s / limit[i]!).toFixed(2))
    .join(" ")}`,
);
for (const l of loads) console.log(l);
const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
console.log(`machine: ${cpu}, ${execFileSync("nproc", { encoding: "utf8" }).trim()} cores`);

/**
 * One `pma merge --part I/N --json` process, under GNU time for its CPU seconds (user +
 * system): input bytes per CPU-second is the rate a part has on a core of its own,
 * which a shared machine's wall clock does not show.
 */
function runPart(args: string[]): Promise<{ bytesRead: number; seconds: number; cpuSeconds: number }> {
  return new Promise((resolvePart, reject) => {
    const child = spawn("/usr/bin/time", ["-f", "%U %S", process.execPath, pma, "merge", ...args, "--json"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`pma merge ${args.join(" ")} failed: ${stderr}`));
      const record = JSON.parse(stdout) as { bytes_read: number; seconds: number };
      const [user, sys] = stderr.trim().split("\n").pop()!.split(" ").map(Number);
      resolvePart({ bytesRead: record.bytes_read, seconds: record.seconds, cpuSeconds: user! + sys! });
    });
  });
}

/**
 * Partitioned merges: for each N, all N parts start at once and the wall time runs until
 * the last one ends; finalize (index, config, record, one rename) is timed on its own.
 * Per-process rate is each part's input bytes over its own seconds, the number that
 * carries over to a cluster where every part has a node to itself.
 */
async function benchParts(counts: number[], threads: number): Promise<void> {
  const out = join(resolve(values.dir!), "merged-parts");
  const GiB = 2 ** 30;
  const rows: string[] = [];
  let first = 0;
  const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  // The reference: one process with a thread per core, as `pma merge` runs by default.
  const whole: number[] = [];
  for (let r = 0; r < runs; r++) {
    execFileSync("sh", ["-c", `cat ${files.map((f) => `'${f}'`).join(" ")} > /dev/null`]);
    rmSync(out, { recursive: true, force: true });
    whole.push(timed(process.execPath, [pma, "merge", ...inputs, "--out", out]).seconds);
  }
  rows.push(
    `| one process, ${execFileSync("nproc", { encoding: "utf8" }).trim()} threads (no --part) | ${median(whole).toFixed(2)} | | ${(inputBytes / GiB / median(whole)).toFixed(2)} | | | | ${load()} |`,
  );
  for (const n of counts) {
    const walls: number[] = [];
    const finals: number[] = [];
    const perProcess: number[] = [];
    const perCpu: number[] = [];
    for (let r = 0; r < runs; r++) {
      execFileSync("sh", ["-c", `cat ${files.map((f) => `'${f}'`).join(" ")} > /dev/null`]);
      rmSync(out, { recursive: true, force: true });
      const t0 = process.hrtime.bigint();
      const parts = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          runPart([...inputs, "--out", out, "--part", `${i}/${n}`, "--threads", String(threads)]),
        ),
      );
      walls.push(Number(process.hrtime.bigint() - t0) / 1e9);
      finals.push(timed(process.execPath, [pma, "merge", "--finalize", out]).seconds);
      perProcess.push(...parts.map((p) => p.bytesRead / GiB / p.seconds));
      perCpu.push(
        parts.reduce((a, p) => a + p.bytesRead, 0) / GiB / parts.reduce((a, p) => a + p.cpuSeconds, 0),
      );
    }
    const wall = median(walls);
    if (first === 0) first = wall;
    rows.push(
      `| ${n} | ${wall.toFixed(2)} | ${median(finals).toFixed(2)} | ${(inputBytes / GiB / wall).toFixed(2)} | ${median(perProcess).toFixed(2)} | ${median(perCpu).toFixed(2)} | ${(first / wall).toFixed(2)} | ${load()} |`,
    );
  }
  rmSync(out, { recursive: true, force: true });
  console.log(
    `inputs: ${count} x bf16 checkpoints, ${(inputBytes / GiB).toFixed(2)} GiB in total, in page cache; ${threads} thread(s) per part; ${runs} run(s), medians`,
  );
  console.log(
    "| parts | wall s (all parts) | finalize s | input GiB/s (all parts) | per-process GiB/s | GiB per CPU-second | speedup vs first row | load avg after |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const row of rows) console.log(row);
  const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
  console.log(`machine: ${cpu}, ${execFileSync("nproc", { encoding: "utf8" }).trim()} cores`);
}

/**
 * `--source s3`: the same merge read from a loopback S3 server (s3rver, a separate
 * process) through the AWS SDK, against the same files on local disk, in one run.
 * Peak RSS of the merge is printed: remote reads hold threads x N x chunk bytes.
 */
async function benchS3(): Promise<void> {
  const { spawn } = await import("node:child_process");
  const { createInterface } = await import("node:readline");
  const { PutObjectCommand, S3Client } = await import("@aws-sdk/client-s3");
  const { createReadStream } = await import("node:fs");
  const storeDir = join(resolve(values.dir!), "s3rver");
  rmSync(storeDir, { recursive: true, force: true });
  mkdirSync(storeDir, { recursive: true });
  const server = spawn(process.execPath, [join(root, "dist/bench/local-s3.js"), storeDir, "bench"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const line = await new Promise<string>((resolveLine) =>
      createInterface({ input: server.stdout! }).once("line", resolveLine),
    );
    const { endpoint } = JSON.parse(line) as { endpoint: string };
    const env = {
      ...process.env,
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_ACCESS_KEY_ID: "S3RVER",
      AWS_SECRET_ACCESS_KEY: "S3RVER",
      AWS_REGION: "us-east-1",
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    };
    const client = new S3Client({
      endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
      requestChecksumCalculation: "WHEN_REQUIRED",
    });
    process.stderr.write(`uploading ${count} checkpoints to ${endpoint} ...\n`);
    for (const dir of inputs) {
      for (const name of ["model.safetensors", "trainer_state.json", "config.json"]) {
        const path = join(dir, name);
        if (!existsSync(path)) continue;
        const key = `run/${dir.slice(runDir.length + 1)}/${name}`;
        await client.send(
          new PutObjectCommand({
            Bucket: "bench",
            Key: key,
            Body: createReadStream(path),
            ContentLength: statSync(path).size,
          }),
        );
      }
    }
    const remote = inputs.map((d) => `s3://bench/run/${d.slice(runDir.length + 1)}/`);
    const rows: Record<string, Timing[]> = { "local disk": [], "loopback S3": [] };
    const timedEnv = (args: string[]): Timing => {
      const hasTime = existsSync("/usr/bin/time");
      const t0 = process.hrtime.bigint();
      const r = hasTime
        ? spawnSync("/usr/bin/time", ["-f", "%M", process.execPath, ...args], {
            encoding: "utf8",
            env,
            maxBuffer: 1 << 26,
          })
        : spawnSync(process.execPath, args, { encoding: "utf8", env, maxBuffer: 1 << 26 });
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (r.status !== 0) throw new Error(`pma ${args.join(" ")} failed: ${r.stderr}`);
      const rss = hasTime ? Number(r.stderr.trim().split("\n").pop()) : NaN;
      return { seconds, maxRssKiB: Number.isFinite(rss) ? rss : null };
    };
    for (let r = 0; r < runs; r++) {
      rmSync(out, { recursive: true, force: true });
      rows["local disk"]!.push(timedEnv([pma, "merge", ...inputs, "--out", out, "--force"]));
      rmSync(out, { recursive: true, force: true });
      rows["loopback S3"]!.push(timedEnv([pma, "merge", ...remote, "--out", out, "--force"]));
    }
    rmSync(out, { recursive: true, force: true });
    const GiB = 2 ** 30;
    const localSeconds = median(rows["local disk"]!.map((t) => t.seconds));
    console.log(
      `inputs: ${count} x bf16 checkpoints, ${(inputBytes / GiB).toFixed(2)} GiB in total; ${runs} run(s), medians; S3 = s3rver on 127.0.0.1 sharing the machine's cores`,
    );
    console.log("| source | seconds | input GiB/s | throughput / local | peak RSS MiB |");
    console.log("|---|---|---|---|---|");
    for (const [name, ts] of Object.entries(rows)) {
      const s = median(ts.map((t) => t.seconds));
      const rss = ts.map((t) => t.maxRssKiB).filter((x): x is number => x !== null);
      console.log(
        `| ${name} | ${s.toFixed(2)} | ${(inputBytes / GiB / s).toFixed(2)} | ${(localSeconds / s).toFixed(2)} | ${rss.length ? (Math.max(...rss) / 1024).toFixed(0) : "n/a"} |`,
      );
    }
    const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
    console.log(`machine: ${cpu}, ${execFileSync("nproc", { encoding: "utf8" }).trim()} cores`);
  } finally {
    server.kill();
    rmSync(storeDir, { recursive: true, force: true });
  }
}

/** `count` torchtitan-style `step-N/` DCP checkpoints (2 ranks, bf16) of the synthetic Llama shapes. */
function writeDcpRun(dir: string, m: SyntheticModel, n: number): void {
  const h = m.hiddenSize;
  const shapes: [string, number[]][] = [["tok_embeddings.weight", [m.vocabSize, h]]];
  for (let l = 0; l < m.layers; l++) {
    for (const w of ["wq", "wk", "wv", "wo"]) shapes.push([`layers.${l}.attention.${w}.weight`, [h, h]]);
    shapes.push(
      [`layers.${l}.feed_forward.w1.weight`, [m.intermediateSize, h]],
      [`layers.${l}.feed_forward.w3.weight`, [m.intermediateSize, h]],
      [`layers.${l}.feed_forward.w2.weight`, [h, m.intermediateSize]],
    );
    shapes.push([`layers.${l}.attention_norm.weight`, [h]], [`layers.${l}.ffn_norm.weight`, [h]]);
  }
  shapes.push(["norm.weight", [h]], ["output.weight", [m.vocabSize, h]]);
  for (let i = 1; i <= n; i++) {
    const step = i * 1000;
    // Finite bf16 values that differ per checkpoint (an xorshift stream; exponents kept small).
    const tensors: SyntheticTensor[] = shapes.map(([name, shape]) => ({
      name,
      dtype: "BF16",
      shape,
      fill: (box, offset, into) => {
        let x = (step * 2654435761 + offset + box.offsets.reduce((a, b) => a * 31 + b, 7)) >>> 0 || 1;
        const u16 = new Uint16Array(into.buffer, into.byteOffset, into.length >> 1);
        for (let k = 0; k < u16.length; k++) {
          x ^= x << 13;
          x ^= x >>> 17;
          x ^= x << 5;
          u16[k] = 0x3c00 | (x & 0x83ff);
        }
      },
    }));
    writeSyntheticDcp(join(dir, `step-${step}`), tensors, { step, tokens_seen: step * (4 << 20) }, 2);
  }
}
