/**
 * Validation of `pma tune` on the lab (docs/tune.md): on a lab profile's dense run,
 * tune with a budget of evaluations on the lab's own held-out data (Brown validation,
 * the same windows as the lab: seq_len, evalTokens), and compare the winner with
 *  - the profile's guideline window (its scaled-down paper recipe: N and V of p.window), and
 *  - the lab's interval-count sweep at the end of the run (V x multipliers at that N, and
 *    N in p.counts at that V), all SMA, scored in the same process on the same windows.
 * Prints every number and the margins, and writes the tune output (with its HTML page).
 *
 *   node dist/bench/tune-lab.js [micro|quick] [budget=30] [dir=pma-lab-tune]
 *
 * The lab run is trained (and reused) by `pma lab interval-count --profile P --dir DIR`.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { labProfile, tokensPerStep } from "../src/lab/profile.js";
import { renderTunePage } from "../src/report/tune-page.js";
import { labRecipes, writeLabHeldout } from "../src/lab/tune-check.js";
import { tuneRun } from "../src/tune/tune.js";

const profileName = process.argv[2] ?? "micro";
const budget = Number(process.argv[3] ?? 30);
const dir = resolve(process.argv[4] ?? "pma-lab-tune");
const p = labProfile(profileName);
const PMA = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

const t0 = performance.now();
const lab = spawnSync(
  process.execPath,
  [PMA, "lab", "interval-count", "--profile", profileName, "--dir", dir, "--no-report"],
  { stdio: ["ignore", "ignore", "inherit"] },
);
assert.equal(lab.status, 0, "pma lab interval-count failed");
const labSeconds = (performance.now() - t0) / 1000;
const runs = readdirSync(join(dir, "runs")).filter((n) => n.startsWith("dense-"));
assert.equal(runs.length, 1, `expected one dense run in ${dir}/runs, found ${runs.join(", ")}`);
const run = join(dir, "runs", runs[0]!);

mkdirSync(join(dir, "tune"), { recursive: true });
const data = join(dir, "tune", "brown-validation.jsonl");
writeLabHeldout(data);
const every = p.denseCheckpointEvery;
const tps = tokensPerStep(p);
const recipes = labRecipes(p);

const r = await tuneRun({
  run,
  data,
  budget,
  out: join(dir, "tune", "out"),
  force: true,
  seq: p.data.seq_len,
  maxTokens: p.evalTokens,
  compare: recipes,
  renderPage: renderTunePage,
});
const guideline = r.compared[0]!;
const labBest = r.compared.slice(1).reduce((a, x) => (x.loss < a.loss ? x : a));
const f = (x: number) => x.toFixed(5);
const lines = [
  `profile ${profileName}: dense run ${run} (${r.checkpoints.length} checkpoints, ${every * tps} tokens apart); held-out ${r.tokensScored} tokens (Brown validation, seq ${r.seq})`,
  `newest checkpoint        ${f(r.baseline.loss)}`,
  ...r.compared.map((x) => `${(x.label ?? "").padEnd(24)} ${f(x.loss)}`),
  `tune best (${r.best.key}) ${f(r.best.loss)}  [evaluation ${r.bestAt} of ${r.evaluations.length}; ${r.computed} computed]`,
  `margin vs guideline: ${f(guideline.loss - r.best.loss)} nats; vs lab best interval-count (${labBest.label}): ${f(labBest.loss - r.best.loss)} nats; vs newest: ${f(r.baseline.loss - r.best.loss)} nats`,
  `first evaluation at least as good as the guideline: ${1 + r.evaluations.findIndex((e) => e.loss <= guideline.loss)}; as the lab best: ${1 + r.evaluations.findIndex((e) => e.loss <= labBest.loss)}`,
  `time: lab ${labSeconds.toFixed(0)} s (cached runs reused), tune ${r.seconds.toFixed(0)} s; page ${join(dir, "tune", "out", "index.html")}`,
];
process.stdout.write(lines.join("\n") + "\n");
