import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { writeSyntheticDcp, type SyntheticTensor } from "../src/formats/dcp/synthetic-writer.js";
import { writeSyntheticRun, type SyntheticModel } from "../src/trajectory/synthetic.js";

/**
 * `npm run bench:merge`: times pma merge against the read limit (`cat` of the same files,
 * in page cache) and against a load-everything baseline, in the same run, and prints
 * input GiB/s, the ratio to cat and peak RSS. `--big` instead merges 3 checkpoints whose
 * total exceeds RAM, to show memory stays bounded when inputs cannot all be cached.
 * `--source s3` compares the same merge read from a loopback S3 server with local disk.
 */
const { values } = parseArgs({
  options: {
    dir: { type: "string", default: "bench-data" },
    checkpoints: { type: "string", default: "10" },
    "gib-per-checkpoint": { type: "string", default: "1" },
    big: { type: "boolean", default: false },
    "skip-baseline": { type: "boolean", default: false },
    runs: { type: "string", default: "3" },
    "generate-only": { type: "boolean", default: false },
    source: { type: "string", default: "local" },
    format: { type: "string", default: "safetensors" },
  },
});
const dcp = values.format === "dcp";
if (values.format !== "safetensors" && !dcp) throw new Error(`--format must be safetensors or dcp (got ${values.format})`);
if (dcp && values.source !== "local") throw new Error("--format dcp is measured on local disk only");
if (values.source !== "local" && values.source !== "s3") throw new Error(`--source is local or s3, not ${values.source}`);
const big = values.big ?? false;
const count = big ? 3 : Number(values.checkpoints);
const gib = big ? 9 : Number(values["gib-per-checkpoint"]);
const runs = Number(values.runs);

// Llama-like shapes: d_model 2048, SwiGLU 5632, vocab 32000; layers scale the size.
const perLayer = 4 * 2048 * 2048 + 3 * 2048 * 5632 + 2 * 2048;
const fixed = 2 * 32000 * 2048 + 2048;
const layers = Math.max(1, Math.round((gib * 2 ** 30) / 2 / perLayer - fixed / perLayer));
const model: SyntheticModel = { hiddenSize: 2048, intermediateSize: 5632, layers, vocabSize: 32000, heads: 16 };
const runDir = resolve(values.dir!, `run-${dcp ? "dcp-" : ""}${count}x${layers}L-bf16`);
const root = resolve(new URL("../..", import.meta.url).pathname);
const pma = join(root, "dist/src/cli/main.js");

if (!existsSync(join(runDir, ".complete"))) {
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  process.stderr.write(`generating ${count} bf16 checkpoints of ${layers} layers (~${gib} GiB each) in ${runDir} ...\n`);
  if (dcp) writeDcpRun(runDir, model, count);
  else await writeSyntheticRun({ dir: runDir, model, checkpoints: count, stepInterval: 1000, tokensPerStep: 4 << 20, dtype: "BF16" });
  writeFileSync(join(runDir, ".complete"), "");
}
if (values["generate-only"]) process.exit(0);
const inputs = Array.from({ length: count }, (_, i) => join(runDir, dcp ? `step-${(i + 1) * 1000}` : `checkpoint-${(i + 1) * 1000}`));
const files = dcp ? inputs.flatMap((d) => readdirSync(d).filter((f) => f.endsWith(".distcp")).map((f) => join(d, f))) : inputs.map((d) => join(d, "model.safetensors"));
const inputBytes = files.reduce((s, f) => s + statSync(f).size, 0);

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
  return s[Math.floor(s.length / 2)]!;
}

const out = join(resolve(values.dir!), "merged");
if (values.source === "s3") {
  await benchS3();
  process.exit(0);
}
const results: Record<string, Timing[]> = { cat: [], "pma merge": [], baseline: [] };
// A DCP merge writes a whole checkpoint in the newest input's layout, so its limit is
// reading every input plus writing and fsyncing one checkpoint's files.
const newestFiles = files.filter((f) => f.startsWith(inputs[inputs.length - 1]! + "/"));
const limitCmd = dcp
  ? `cat ${files.map((f) => `'${f}'`).join(" ")} > /dev/null && cat ${newestFiles.map((f) => `'${f}'`).join(" ")} > '${out}.limit' && sync '${out}.limit'`
  : `cat ${files.map((f) => `'${f}'`).join(" ")} > /dev/null`;
for (let r = 0; r < runs; r++) {
  results["cat"]!.push(timed("sh", ["-c", limitCmd]));
  rmSync(`${out}.limit`, { force: true });
  rmSync(out, { recursive: true, force: true });
  results["pma merge"]!.push(timed(process.execPath, [pma, "merge", ...inputs, "--out", out, "--force"]));
  if (!big && !dcp && !values["skip-baseline"]) {
    results["baseline"]!.push(timed(process.execPath, [join(root, "dist/bench/merge-baseline.js"), join(resolve(values.dir!), "baseline.safetensors"), ...inputs]));
  }
}
rmSync(out, { recursive: true, force: true });
rmSync(join(resolve(values.dir!), "baseline.safetensors"), { force: true });

const catSeconds = median(results["cat"]!.map((t) => t.seconds));
const GiB = 2 ** 30;
const mem = execFileSync("sh", ["-c", "free -g | awk '/Mem:/ {print $2}'"], { encoding: "utf8" }).trim();
if (dcp) console.log("format: torch.distributed.checkpoint (2 ranks); the cat row is the limit: read every input, write and fsync one checkpoint");
console.log(`inputs: ${count} x bf16 checkpoints, ${(inputBytes / GiB).toFixed(2)} GiB in total; machine RAM ${mem} GiB; ${runs} run(s), medians`);
console.log("| command | seconds | input GiB/s | time / cat | peak RSS MiB |");
console.log("|---|---|---|---|---|");
for (const [name, ts] of Object.entries(results)) {
  if (ts.length === 0) continue;
  const s = median(ts.map((t) => t.seconds));
  const rss = ts.map((t) => t.maxRssKiB).filter((x): x is number => x !== null);
  console.log(`| ${name} | ${s.toFixed(2)} | ${(inputBytes / GiB / s).toFixed(2)} | ${(s / catSeconds).toFixed(2)} | ${rss.length ? (Math.max(...rss) / 1024).toFixed(0) : "n/a"} |`);
}
const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
console.log(`machine: ${cpu}, ${execFileSync("nproc", { encoding: "utf8" }).trim()} cores`);

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
  const server = spawn(process.execPath, [join(root, "dist/bench/local-s3.js"), storeDir, "bench"], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const line = await new Promise<string>((resolveLine) => createInterface({ input: server.stdout! }).once("line", resolveLine));
    const { endpoint } = JSON.parse(line) as { endpoint: string };
    const env = { ...process.env, AWS_ENDPOINT_URL_S3: endpoint, AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_REGION: "us-east-1", AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" };
    const client = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" }, requestChecksumCalculation: "WHEN_REQUIRED" });
    process.stderr.write(`uploading ${count} checkpoints to ${endpoint} ...\n`);
    for (const dir of inputs) {
      for (const name of ["model.safetensors", "trainer_state.json", "config.json"]) {
        const path = join(dir, name);
        if (!existsSync(path)) continue;
        const key = `run/${dir.slice(runDir.length + 1)}/${name}`;
        await client.send(new PutObjectCommand({ Bucket: "bench", Key: key, Body: createReadStream(path), ContentLength: statSync(path).size }));
      }
    }
    const remote = inputs.map((d) => `s3://bench/run/${d.slice(runDir.length + 1)}/`);
    const rows: Record<string, Timing[]> = { "local disk": [], "loopback S3": [] };
    const timedEnv = (args: string[]): Timing => {
      const hasTime = existsSync("/usr/bin/time");
      const t0 = process.hrtime.bigint();
      const r = hasTime
        ? spawnSync("/usr/bin/time", ["-f", "%M", process.execPath, ...args], { encoding: "utf8", env, maxBuffer: 1 << 26 })
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
    console.log(`inputs: ${count} x bf16 checkpoints, ${(inputBytes / GiB).toFixed(2)} GiB in total; ${runs} run(s), medians; S3 = s3rver on 127.0.0.1 sharing the machine's cores`);
    console.log("| source | seconds | input GiB/s | throughput / local | peak RSS MiB |");
    console.log("|---|---|---|---|---|");
    for (const [name, ts] of Object.entries(rows)) {
      const s = median(ts.map((t) => t.seconds));
      const rss = ts.map((t) => t.maxRssKiB).filter((x): x is number => x !== null);
      console.log(`| ${name} | ${s.toFixed(2)} | ${(inputBytes / GiB / s).toFixed(2)} | ${(localSeconds / s).toFixed(2)} | ${rss.length ? (Math.max(...rss) / 1024).toFixed(0) : "n/a"} |`);
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
    shapes.push([`layers.${l}.feed_forward.w1.weight`, [m.intermediateSize, h]], [`layers.${l}.feed_forward.w3.weight`, [m.intermediateSize, h]], [`layers.${l}.feed_forward.w2.weight`, [h, m.intermediateSize]]);
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
