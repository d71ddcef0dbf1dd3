/**
 * A merge killed with SIGKILL at random moments, again and again, with real processes:
 * afterwards the output is either absent or a complete merge (the previous one, or the
 * new one if the kill came after it was published), never partial; a previous output
 * moved aside for replacement is moved back by the next writer; and the inputs are
 * byte-identical to what they were before the first kill.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { cp, mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { StagedDir } from "../src/common/atomic-dir.js";
import { gguf } from "../src/formats/gguf-values.js";
import { writeGguf } from "../src/formats/gguf-writer.js";
import { writeSyntheticRun } from "../src/trajectory/synthetic.js";
import { checksums } from "./helpers/checksums.js";
import { rng, tempDir } from "./helpers/fixtures.js";
import { startPma, waitFor, fileExists } from "./helpers/processes.js";

const MODEL = { hiddenSize: 192, intermediateSize: 512, layers: 3, vocabSize: 3000, heads: 4 };
const KILLS = 20;
const GGUF_KILLS = 8;

/** Checksums without the merge record, whose timing fields differ from run to run. */
function content(sums: Record<string, string>): Record<string, string> {
  const { ["pma_merge.json"]: _record, ...rest } = sums;
  return rest;
}

interface KillPlan {
  /** Milliseconds from the start of the work (the lock appearing) to the kill; null: from spawn. */
  afterLock: boolean;
  delay: number;
}

/** Where kills land: mostly during the work, some during start-up (before any output exists). */
function killPlans(n: number, workMs: number, seed: number): KillPlan[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) =>
    i % 4 === 3 ? { afterLock: false, delay: r() * 400 } : { afterLock: true, delay: r() * workMs * 1.2 },
  );
}

describe("SIGKILL during a merge", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let run: string[];
  before(async () => {
    tmp = await tempDir("pma-kill-");
    run = await writeSyntheticRun({
      dir: join(tmp.dir, "run"),
      model: MODEL,
      checkpoints: 3,
      stepInterval: 10,
      tokensPerStep: 100,
      dtype: "BF16",
    });
  });
  after(() => tmp.cleanup());

  test(
    `safetensors folder output: ${KILLS} kills leave no partial output and unchanged inputs`,
    { timeout: 300_000 },
    async (t) => {
      const inputsBefore = await checksums(join(tmp.dir, "run"));
      const outs = join(tmp.dir, "outs");
      await mkdir(outs);
      const out = join(outs, "merged");
      const lock = join(outs, ".merged.pma-lock");
      const merge = (method: string, extra: string[] = []) => [
        "merge",
        ...run,
        "--out",
        out,
        "--method",
        method,
        "--shard-size",
        "1MB",
        "--threads",
        "1",
        ...extra,
      ];

      // The two complete outputs a kill may leave: the previous (SMA) and the new (EMA).
      const ema = await startPma(merge("ema")).exited;
      assert.equal(ema.code, 0, ema.stderr);
      const emaSums = content(await checksums(out));
      const sma = startPma(merge("sma", ["--force"]));
      await waitFor("the lock", fileExists(lock));
      const lockedAt = Date.now();
      assert.equal((await sma.exited).code, 0);
      const workMs = Math.max(50, Date.now() - lockedAt);
      const smaSums = content(await checksums(out));
      assert.notDeepEqual(smaSums, emaSums);

      const seen = { absent: 0, previous: 0, replaced: 0 };
      let current = smaSums;
      for (const [i, plan] of killPlans(KILLS, workMs, 7).entries()) {
        const p = startPma(merge(current === smaSums ? "ema" : "sma", ["--force"]));
        if (plan.afterLock) await waitFor("the lock", () => existsSync(lock) || p.child.exitCode !== null);
        await sleep(plan.delay);
        p.child.kill("SIGKILL");
        await p.exited;
        const visible = (await readdir(outs)).filter((n) => !n.startsWith("."));
        assert.ok(
          visible.length === 0 || (visible.length === 1 && visible[0] === "merged"),
          `kill ${i}: ${visible.join(", ")}`,
        );
        if (!existsSync(out)) {
          // Killed between moving the previous output aside and moving the new one in:
          // the next writer puts the previous one back.
          seen.absent++;
          const s = await StagedDir.create(out, true);
          await s.discard();
          assert.ok(existsSync(out), `kill ${i}: the previous output was not recovered`);
        }
        const now = content(await checksums(out));
        if (JSON.stringify(now) === JSON.stringify(current)) seen.previous++;
        else {
          const other = current === smaSums ? emaSums : smaSums;
          assert.deepEqual(now, other, `kill ${i}: the output is neither the previous nor the new merge`);
          JSON.parse(await readFile(join(out, "pma_merge.json"), "utf8"));
          seen.replaced++;
          current = other;
        }
      }
      // A last complete run leaves nothing hidden behind: killed runs' leftovers are cleared.
      const last = await startPma(merge("sma", ["--force"])).exited;
      assert.equal(last.code, 0, last.stderr);
      assert.deepEqual(await readdir(outs), ["merged"]);
      assert.deepEqual(await checksums(join(tmp.dir, "run")), inputsBefore);
      assert.equal(seen.previous + seen.replaced, KILLS);
      // Where kills landed varies with the machine's speed; report it, for the record.
      t.diagnostic(`kills: ${JSON.stringify(seen)}, work ${workMs} ms`);
    },
  );

  test("killed between moving the previous output aside and moving the new one in: the next writer moves it back", async () => {
    const outs = join(tmp.dir, "between");
    await mkdir(outs);
    const out = join(outs, "merged");
    assert.equal((await startPma(["merge", ...run, "--out", out, "--threads", "1"]).exited).code, 0);
    const previous = await checksums(out);
    // The state a kill inside publish() leaves: the published output renamed aside, the
    // finished staging directory not yet renamed in (pid 4194305 cannot exist).
    await rename(out, join(outs, ".merged.pma-old-4194305-0a0b0c0d"));
    await cp(join(outs, ".merged.pma-old-4194305-0a0b0c0d"), join(outs, ".merged.pma-tmp-4194305-01020304"), {
      recursive: true,
    });
    await writeFile(
      join(outs, ".merged.pma-lock"),
      JSON.stringify({
        host: hostname(),
        pid: 4_194_305,
        start: "1",
        command: "pma merge",
        since: "then",
        token: "dead",
      }),
    );
    const again = await startPma(["merge", ...run, "--out", out, "--threads", "1"]).exited;
    // Without --force the restored output is refused as existing: it is back, and untouched.
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
    assert.deepEqual(await readdir(outs), ["merged"]);
    assert.deepEqual(await checksums(out), previous);
  });

  test(
    `GGUF file output: ${GGUF_KILLS} kills leave the previous file or the new one, never a partial one`,
    { timeout: 300_000 },
    async () => {
      const dir = join(tmp.dir, "gguf-run");
      await mkdir(dir);
      const r = rng(3);
      const inputs: string[] = [];
      for (let c = 1; c <= 3; c++) {
        const data = new Float32Array(1 << 20).map(() => r() - 0.5);
        inputs.push(
          await writeGguf(
            join(dir, `checkpoint-${c * 10}.gguf`),
            new Map([["general.architecture", gguf.string("llama")]]),
            [{ name: "w", type: "F32", dims: [1024, 1024], data: new Uint8Array(data.buffer) }],
          ),
        );
      }
      const inputsBefore = await checksums(dir);
      const outs = join(tmp.dir, "gguf-outs");
      await mkdir(outs);
      const out = join(outs, "merged.gguf");
      const lock = join(outs, ".merged.gguf.pma-lock");
      const merge = (method: string) => [
        "merge",
        ...inputs,
        "--out",
        out,
        "--method",
        method,
        "--force",
        "--threads",
        "1",
      ];
      assert.equal((await startPma(merge("ema")).exited).code, 0);
      const emaSum = (await checksums(outs))["merged.gguf"]!;
      const first = startPma(merge("sma"));
      await waitFor("the lock", fileExists(lock));
      const lockedAt = Date.now();
      assert.equal((await first.exited).code, 0);
      const workMs = Math.max(50, Date.now() - lockedAt);
      const smaSum = (await checksums(outs))["merged.gguf"]!;
      for (const [i, plan] of killPlans(GGUF_KILLS, workMs, 11).entries()) {
        const p = startPma(merge(i % 2 === 0 ? "ema" : "sma"));
        if (plan.afterLock) await waitFor("the lock", () => existsSync(lock) || p.child.exitCode !== null);
        await sleep(plan.delay);
        p.child.kill("SIGKILL");
        await p.exited;
        const visible = (await readdir(outs)).filter((n) => !n.startsWith("."));
        assert.deepEqual(visible, ["merged.gguf"], `kill ${i}`);
        assert.ok(
          [emaSum, smaSum].includes((await checksums(outs))["merged.gguf"]!),
          `kill ${i}: merged.gguf is neither merge`,
        );
      }
      assert.equal((await startPma(merge("sma")).exited).code, 0);
      assert.deepEqual(await readdir(outs), ["merged.gguf"]);
      assert.deepEqual(await checksums(dir), inputsBefore);
    },
  );
});
