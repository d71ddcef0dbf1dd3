import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Coverage } from "./coverage.js";
import { mutate, Rng } from "./mutate.js";
import { utf8, type FuzzTarget } from "./target.js";
import { execute, type Verdict } from "./verdict.js";

export interface FuzzOptions {
  seconds: number;
  /** Scratch space for the target's files (a tmpfs is fastest). */
  work: string;
  /** Where crashing inputs are written, as <target>/<hash>.bin with a .txt beside it. */
  findings: string;
  /** Extra inputs to start from: earlier crashes (regression inputs), a saved corpus. */
  extraSeedDirs?: string[];
  /** When set, inputs that found new coverage are saved here (a longer run resumes from them). */
  corpusDir?: string;
  maxLength?: number;
  seed?: number;
  /** An execution slower than this is a finding (a hang in the making). */
  slowMs?: number;
  /** Called with each input before it runs, so a supervisor can save the one that kills us. */
  beforeExec?: (data: Uint8Array) => void;
}

export interface CrashRecord {
  signature: string;
  message: string;
  /** Path of the first input that produced it. */
  input: string;
  count: number;
}

export interface FuzzStats {
  target: string;
  seconds: number;
  executions: number;
  execsPerSecond: number;
  seeds: number;
  corpus: number;
  /** Coverage features (blocks x hit-count buckets) reached. */
  features: number;
  ok: number;
  /** PmaError codes by count. */
  rejected: Record<string, number>;
  crashes: CrashRecord[];
  /** Most bytes one execution allocated (typed arrays and Buffers; see meter.ts). */
  maxAllocatedBytes: number;
  /** Size of the largest input run. */
  maxInputBytes: number;
}

async function readDirInputs(dir: string): Promise<Uint8Array[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(
    names
      .filter((n) => !n.endsWith(".txt"))
      .sort()
      .map((n) => readFile(join(dir, n))),
  );
}

function hash(data: Uint8Array): string {
  return createHash("sha1").update(data).digest("hex").slice(0, 16);
}

/**
 * Coverage-guided mutational fuzzing of one target for a fixed time: start from the
 * seeds, mutate a corpus entry, run it, keep the mutant if it reached new coverage,
 * record it if it crashed. Crashes are deduplicated by signature.
 */
export async function fuzzTarget(target: FuzzTarget, o: FuzzOptions): Promise<FuzzStats> {
  const rng = new Rng(o.seed ?? 1);
  const slowMs = o.slowMs ?? 5000;
  const mutatorOptions = {
    maxLength: o.maxLength ?? 16384,
    dictionary: target.dictionary.map(utf8),
    dictionaryWords: target.dictionary,
  };
  await mkdir(o.work, { recursive: true });
  const seeds = [...(await target.seeds(o.work))];
  for (const d of o.extraSeedDirs ?? []) seeds.push(...(await readDirInputs(d)));
  const run = await target.setup(o.work);
  const coverage = new Coverage((url) => url.includes("/dist/src/"));
  const corpus: Uint8Array[] = [];
  const crashes = new Map<string, CrashRecord>();
  const stats: FuzzStats = {
    target: target.name,
    seconds: 0,
    executions: 0,
    execsPerSecond: 0,
    seeds: seeds.length,
    corpus: 0,
    features: 0,
    ok: 0,
    rejected: {},
    crashes: [],
    maxAllocatedBytes: 0,
    maxInputBytes: 0,
  };
  const findings = join(o.findings, target.name);

  const record = async (data: Uint8Array, v: Extract<Verdict, { kind: "crash" }>) => {
    const known = crashes.get(v.signature);
    if (known !== undefined) {
      known.count++;
      return;
    }
    await mkdir(findings, { recursive: true });
    const file = join(findings, `${hash(data)}.bin`);
    await writeFile(file, data);
    await writeFile(file.replace(/\.bin$/, ".txt"), `${v.signature}\n\n${v.stack || v.message}\n`);
    crashes.set(v.signature, { signature: v.signature, message: v.message, input: file, count: 1 });
  };

  const once = async (data: Uint8Array): Promise<boolean> => {
    o.beforeExec?.(data);
    const { verdict, allocated } = await execute(run, data, slowMs);
    stats.executions++;
    stats.maxAllocatedBytes = Math.max(stats.maxAllocatedBytes, allocated);
    stats.maxInputBytes = Math.max(stats.maxInputBytes, data.length);
    const features = coverage.take();
    if (verdict.kind === "crash") {
      await record(data, verdict);
      return false;
    }
    if (verdict.kind === "ok") stats.ok++;
    else stats.rejected[verdict.code] = (stats.rejected[verdict.code] ?? 0) + 1;
    return coverage.add(features) > 0;
  };

  const started = performance.now();
  for (const s of seeds) {
    await once(s);
    corpus.push(s);
  }
  if (corpus.length === 0) corpus.push(new Uint8Array(0));
  const deadline = started + o.seconds * 1000;
  while (performance.now() < deadline) {
    // Newer entries found something older ones did not: favour them a little.
    const i =
      rng.below(2) === 0
        ? corpus.length - 1 - rng.below(Math.min(corpus.length, 16))
        : rng.below(corpus.length);
    const child = mutate(corpus[i]!, corpus[rng.below(corpus.length)]!, rng, mutatorOptions);
    if (await once(child)) {
      corpus.push(child);
      if (o.corpusDir !== undefined) {
        await mkdir(o.corpusDir, { recursive: true });
        await writeFile(join(o.corpusDir, `${hash(child)}.bin`), child);
      }
    }
  }
  coverage.close();
  stats.seconds = (performance.now() - started) / 1000;
  stats.execsPerSecond = Math.round(stats.executions / stats.seconds);
  stats.corpus = corpus.length;
  stats.features = coverage.size;
  stats.crashes = [...crashes.values()];
  return stats;
}
