/**
 * A full disk, for real: a tmpfs of a few MB mounted for the test (so it needs root,
 * as in CI; elsewhere the test is skipped, saying so). A merge that runs out of space
 * fails with a clear error, removes its temporary files (the free space is back to what
 * it was), leaves the previous output byte-identical and the inputs untouched.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { statfsSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { writeFileAtomic, writeFileAtomicSync } from "../src/common/atomic-dir.js";
import { isPmaError } from "../src/common/errors.js";
import { gguf } from "../src/formats/gguf-values.js";
import { writeGguf } from "../src/formats/gguf-writer.js";
import { writeSyntheticRun } from "../src/trajectory/synthetic.js";
import { checksums } from "./helpers/checksums.js";
import { rng, tempDir } from "./helpers/fixtures.js";
import { startPma } from "./helpers/processes.js";

// About 1.3 MB per bf16 checkpoint, so a 2 MB disk holds one merge but not two.
const MODEL = { hiddenSize: 128, intermediateSize: 256, layers: 2, vocabSize: 2000, heads: 4 };
const DISK = "2m";

function mountTmpfs(dir: string): string | null {
  if (process.getuid?.() !== 0) return "needs root to mount a tmpfs";
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${DISK}`, "tmpfs", dir], { stdio: "pipe" });
    return null;
  } catch (e) {
    return `cannot mount a tmpfs here (${(e as Error).message.split("\n")[0]})`;
  }
}

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

describe("a full disk", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let disk: string;
  let skip: string | null = null;
  before(async () => {
    tmp = await tempDir("pma-disk-full-");
    disk = join(tmp.dir, "disk");
    await mkdir(disk);
    skip = mountTmpfs(disk);
  });
  after(async () => {
    if (skip === null) execFileSync("umount", [disk]);
    await tmp.cleanup();
  });

  test("a merge that runs out of space: clear error, temporary files removed, previous output intact", async (t) => {
    if (skip !== null) return t.skip(skip);
    const run = await writeSyntheticRun({
      dir: join(tmp.dir, "run"),
      model: MODEL,
      checkpoints: 3,
      stepInterval: 10,
      tokensPerStep: 100,
      dtype: "BF16",
    });
    const inputs = await checksums(join(tmp.dir, "run"));
    const out = join(disk, "merged");
    const first = await startPma(["merge", ...run, "--out", out, "--threads", "1"]).exited;
    assert.equal(first.code, 0, first.stderr);
    const previous = await checksums(out);
    const free = freeBytes(disk);

    const full = await startPma([
      "merge",
      ...run,
      "--out",
      out,
      "--method",
      "ema",
      "--force",
      "--threads",
      "1",
    ]).exited;
    assert.equal(full.code, 1, full.stdout);
    assert.match(full.stderr, /no space left on the device/i);
    assert.doesNotMatch(full.stderr, /\n\s+at /, "no stack trace");
    assert.deepEqual(await readdir(disk), ["merged"], "temporary files and the lock are removed");
    assert.equal(freeBytes(disk), free, "the space the failed merge used is free again");
    assert.deepEqual(await checksums(out), previous);
    assert.deepEqual(await checksums(join(tmp.dir, "run")), inputs);
  });

  test("a GGUF merge that runs out of space: the same", async (t) => {
    if (skip !== null) return t.skip(skip);
    // The disk to itself: the previous test's output would leave no room for even one merge.
    await rm(join(disk, "merged"), { recursive: true, force: true });
    const dir = join(tmp.dir, "gguf-run");
    await mkdir(dir);
    const r = rng(5);
    const inputs: string[] = [];
    for (let c = 1; c <= 2; c++) {
      const data = new Float32Array(300_000).map(() => r() - 0.5);
      inputs.push(
        await writeGguf(
          join(dir, `checkpoint-${c}.gguf`),
          new Map([["general.architecture", gguf.string("llama")]]),
          [{ name: "w", type: "F32", dims: [1000, 300], data: new Uint8Array(data.buffer) }],
        ),
      );
    }
    const before = await checksums(dir);
    const out = join(disk, "merged.gguf");
    assert.equal((await startPma(["merge", ...inputs, "--out", out, "--threads", "1"]).exited).code, 0);
    const previous = (await checksums(disk))["merged.gguf"];
    const free = freeBytes(disk);
    const full = await startPma([
      "merge",
      ...inputs,
      "--out",
      out,
      "--method",
      "ema",
      "--force",
      "--threads",
      "1",
    ]).exited;
    assert.equal(full.code, 1, full.stdout);
    assert.match(full.stderr, /no space left on the device/i);
    assert.deepEqual(await readdir(disk), ["merged.gguf"]);
    assert.equal(freeBytes(disk), free);
    assert.equal((await checksums(disk))["merged.gguf"], previous);
    assert.deepEqual(await checksums(dir), before);
  });

  test("a small file written atomically (sync or async) on a full disk: the same message, no temporary file", async (t) => {
    if (skip !== null) return t.skip(skip);
    const names = await readdir(disk);
    const big = new Uint8Array(3 << 20).fill(7);
    const full = (e: unknown) =>
      isPmaError(e) &&
      e.code === "IO" &&
      /no space left on the device/.test(e.message) &&
      e.message.includes("state.json");
    assert.throws(() => writeFileAtomicSync(join(disk, "state.json"), big), full);
    await assert.rejects(writeFileAtomic(join(disk, "state.json"), big), full);
    assert.deepEqual(await readdir(disk), names);
  });
});
