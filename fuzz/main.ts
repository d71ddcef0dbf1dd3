/**
 * `npm run fuzz -- [--seconds 60] [--targets a,b] [--stats FILE] [--corpus DIR]`
 *
 * Fuzzes each target for --seconds in a child process and supervises it: a child that
 * dies (out of memory, a fatal error) or stops making progress for --hang-seconds is a
 * finding, recorded with the input it was running, and a new child continues for the
 * rest of the time. Inputs found to crash are written to --findings/<target>/ and their
 * signatures printed (with the input in base64, so a CI log is enough to reproduce);
 * the exit status is 1 when there is any. Known crash inputs kept as regression tests
 * (test/fuzz-regressions/<target>/) are replayed first.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { CrashRecord, FuzzStats } from "./engine.js";
import { TARGETS } from "./targets/index.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const CHILD = fileURLToPath(new URL("./child.js", import.meta.url));

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "60" },
    targets: { type: "string" },
    findings: { type: "string", default: join(ROOT, "fuzz", "findings") },
    stats: { type: "string" },
    corpus: { type: "string" },
    seed: { type: "string", default: String(Date.now() % 1_000_000) },
    "hang-seconds": { type: "string", default: "30" },
    "max-len": { type: "string", default: "16384" },
    // The heap limit makes a reader that builds JS objects without bound die here, loudly.
    "max-old-space-mb": { type: "string", default: "1024" },
  },
});

const seconds = Number(values.seconds);
const hangMs = Number(values["hang-seconds"]) * 1000;
const names = values.targets?.split(",") ?? TARGETS.map((t) => t.name);
for (const n of names) {
  if (!TARGETS.some((t) => t.name === n)) {
    process.stderr.write(`unknown target "${n}"; targets: ${TARGETS.map((t) => t.name).join(", ")}\n`);
    process.exit(2);
  }
}
const scratchRoot = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();

interface ChildResult {
  stats: FuzzStats | null;
  died: string | null;
  elapsed: number;
}

function runChild(target: string, budget: number, seed: number, scratch: string): Promise<ChildResult> {
  const current = join(scratch, "current.bin");
  const statsFile = join(scratch, "stats.json");
  rmSync(statsFile, { force: true });
  const args = [
    `--max-old-space-size=${values["max-old-space-mb"]}`,
    CHILD,
    "--target",
    target,
    "--seconds",
    String(budget),
    "--work",
    join(scratch, "work"),
    "--findings",
    values.findings!,
    "--stats",
    statsFile,
    "--current",
    current,
    "--seed",
    String(seed),
    "--max-len",
    values["max-len"]!,
    "--extra",
    join(ROOT, "test", "fuzz-regressions", target),
  ];
  if (values.corpus !== undefined)
    args.push("--corpus", join(values.corpus, target), "--extra", join(values.corpus, target));
  const started = Date.now();
  return new Promise((done) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "inherit", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000);
    });
    let hung = false;
    const watchdog = setInterval(() => {
      const last = existsSync(current) ? statSync(current).mtimeMs : started;
      if (Date.now() - Math.max(last, started) > hangMs) {
        hung = true;
        child.kill("SIGKILL");
      }
    }, 500);
    child.on("exit", (code, signal) => {
      clearInterval(watchdog);
      const elapsed = (Date.now() - started) / 1000;
      if (code === 0 && existsSync(statsFile)) {
        done({ stats: JSON.parse(readFileSync(statsFile, "utf8")) as FuzzStats, died: null, elapsed });
        return;
      }
      const why = hung
        ? `hang: no progress for ${hangMs / 1000} s`
        : `process died (${signal ?? `exit ${code}`}): ${stderr.trim().split("\n").slice(-3).join(" | ")}`;
      done({ stats: null, died: why, elapsed });
    });
  });
}

async function fuzzOne(target: string): Promise<FuzzStats> {
  const scratch = mkdtempSync(join(scratchRoot, `pma-fuzz-${target}-`));
  const total: FuzzStats = {
    target,
    seconds: 0,
    executions: 0,
    execsPerSecond: 0,
    seeds: 0,
    corpus: 0,
    features: 0,
    ok: 0,
    rejected: {},
    crashes: [],
    maxAllocatedBytes: 0,
    maxInputBytes: 0,
  };
  let remaining = seconds;
  let seed = Number(values.seed);
  try {
    while (remaining >= 1) {
      const r = await runChild(target, remaining, seed++, scratch);
      remaining -= r.elapsed;
      if (r.stats !== null) {
        const s = r.stats;
        total.seconds += s.seconds;
        total.executions += s.executions;
        total.seeds = s.seeds;
        total.corpus = Math.max(total.corpus, s.corpus);
        total.features = Math.max(total.features, s.features);
        total.ok += s.ok;
        for (const [k, v] of Object.entries(s.rejected)) total.rejected[k] = (total.rejected[k] ?? 0) + v;
        for (const c of s.crashes) mergeCrash(total.crashes, c);
        total.maxAllocatedBytes = Math.max(total.maxAllocatedBytes, s.maxAllocatedBytes);
        total.maxInputBytes = Math.max(total.maxInputBytes, s.maxInputBytes);
        break;
      }
      // The child died on the input it was running: keep that input, go on with a new child.
      const current = join(scratch, "current.bin");
      const data = existsSync(current) ? readFileSync(current) : Buffer.alloc(0);
      const dir = join(values.findings!, target);
      await mkdir(dir, { recursive: true });
      const file = join(dir, `died-${Date.now()}.bin`);
      await writeFile(file, data);
      await writeFile(file.replace(/\.bin$/, ".txt"), `${r.died}\n`);
      mergeCrash(total.crashes, {
        signature: r.died!.replace(/\d+/g, "N").slice(0, 160),
        message: r.died!,
        input: file,
        count: 1,
      });
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  total.execsPerSecond = total.seconds > 0 ? Math.round(total.executions / total.seconds) : 0;
  return total;
}

function mergeCrash(list: CrashRecord[], c: CrashRecord): void {
  const known = list.find((k) => k.signature === c.signature);
  if (known !== undefined) known.count += c.count;
  else list.push(c);
}

const results: FuzzStats[] = [];
for (const name of names) {
  process.stdout.write(`fuzzing ${name} for ${seconds} s ...\n`);
  const s = await fuzzOne(name);
  results.push(s);
  const rejected = Object.entries(s.rejected)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 4)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  process.stdout.write(
    `  ${s.executions} executions (${s.execsPerSecond}/s), corpus ${s.corpus} from ${s.seeds} seeds, ${s.features} coverage features, ` +
      `${s.ok} ok, rejected: ${rejected || "none"}; inputs up to ${s.maxInputBytes} bytes, at most ${(s.maxAllocatedBytes / 2 ** 20).toFixed(1)} MiB allocated by one; ${s.crashes.length} crash(es)\n`,
  );
  for (const c of s.crashes) {
    process.stdout.write(
      `  CRASH x${c.count}: ${c.signature}\n    input: ${c.input}\n    base64: ${readFileSync(c.input).toString("base64").slice(0, 4000)}\n`,
    );
  }
}
if (values.stats !== undefined)
  writeFileSync(
    values.stats,
    JSON.stringify({ date: new Date().toISOString(), secondsPerTarget: seconds, targets: results }, null, 2) +
      "\n",
  );
const crashes = results.reduce((n, s) => n + s.crashes.length, 0);
process.stdout.write(
  `\n${results.reduce((n, s) => n + s.executions, 0)} executions over ${results.length} targets, ${crashes} unique crash(es)\n`,
);
process.exit(crashes > 0 ? 1 : 0);
