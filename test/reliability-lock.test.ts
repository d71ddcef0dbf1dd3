/**
 * One writer per output. Two real pma processes aimed at the same output: the second is
 * refused with a message naming the first; a lock left by a process killed outright is
 * taken over; the lock's staleness rules (dead pid, reused pid, other host, a lock file
 * still being written) each decide the right way.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile, utimes, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { acquireLock } from "../src/common/lock.js";
import { writeSyntheticRun } from "../src/trajectory/synthetic.js";
import { tempDir } from "./helpers/fixtures.js";
import { fileExists, startPma, waitFor } from "./helpers/processes.js";

const MODEL = { hiddenSize: 64, intermediateSize: 128, layers: 2, vocabSize: 500, heads: 4 };

describe("output locks", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let run: string[];
  before(async () => {
    tmp = await tempDir("pma-lock-");
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

  test("a second pma merge into the same --out is refused, naming the first; the first still completes", async () => {
    const out = join(tmp.dir, "merged");
    const lock = join(tmp.dir, ".merged.pma-lock");
    // Frozen while it holds the lock, so the overlap is certain rather than a race. On a
    // busy machine the first may finish before it is frozen: then it is tried again.
    let first = startPma(["merge", ...run, "--out", out, "--force", "--threads", "1"]);
    for (let attempt = 1; ; attempt++) {
      await waitFor(
        "the first merge to take its lock",
        () => existsSync(lock) || first.child.exitCode !== null,
      );
      first.child.kill("SIGSTOP");
      await sleep(20);
      if (existsSync(lock)) break;
      first.child.kill("SIGCONT");
      await first.exited;
      assert.ok(attempt < 5, "the first merge always finished before it could be frozen");
      first = startPma(["merge", ...run, "--out", out, "--force", "--threads", "1"]);
    }
    try {
      const second = await startPma(["merge", ...run, "--out", out, "--force", "--threads", "1"]).exited;
      assert.equal(second.code, 1, second.stderr);
      assert.match(
        second.stderr,
        new RegExp(
          `another pma \\(pid ${first.child.pid} on ${hostname()}.*\\) is writing ${out.replace(/[/.]/g, "\\$&")}`,
        ),
      );
      assert.doesNotMatch(second.stderr, /\n\s+at /, "no stack trace");
    } finally {
      first.child.kill("SIGCONT");
    }
    const r = await first.exited;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(out, "model.safetensors")));
    assert.equal(existsSync(lock), false, "the lock is released");
  });

  test("a lock left by a merge killed with SIGKILL is taken over, and its staging directory removed", async () => {
    const out = join(tmp.dir, "merged-killed");
    const lock = join(tmp.dir, ".merged-killed.pma-lock");
    const first = startPma(["merge", ...run, "--out", out, "--threads", "1"]);
    await waitFor("the first merge to take its lock", fileExists(lock));
    first.child.kill("SIGKILL");
    await first.exited;
    assert.ok(existsSync(lock), "SIGKILL leaves the lock behind");
    const second = await startPma(["merge", ...run, "--out", out, "--threads", "1"]).exited;
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(
      (await readdir(tmp.dir)).filter((n) => n.startsWith(".merged-killed")),
      [],
    );
  });

  test("a second pma watch on the same --out is refused; SIGTERM stops the first and frees the lock", async () => {
    const out = join(tmp.dir, "watch-out");
    const first = startPma([
      "watch",
      join(tmp.dir, "run"),
      "--interval",
      "1000",
      "--count",
      "2",
      "--out",
      out,
      "--poll",
      "0.2",
      "--settle",
      "0",
      "--no-init",
      "--threads",
      "1",
    ]);
    await waitFor("the first watcher's lock", fileExists(join(out, ".watch.lock")));
    const second = await startPma([
      "watch",
      join(tmp.dir, "run"),
      "--interval",
      "1000",
      "--count",
      "2",
      "--out",
      out,
      "--once",
      "--no-init",
    ]).exited;
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`another pma \\(pid ${first.child.pid} .*\\) is watching into`));
    first.child.kill("SIGTERM");
    const r = await first.exited;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(join(out, ".watch.lock")), false);
  });

  test("staleness: a dead pid or a reused pid is taken over; another host, a live owner or a fresh unreadable lock is not", async () => {
    const path = join(tmp.dir, "unit.lock");
    const write = (o: object) =>
      writeFile(
        path,
        JSON.stringify({ host: hostname(), command: "pma x", since: "then", token: "t", ...o }),
      );
    // No process has pid 2^22+1 here (pid_max is at most 2^22).
    await write({ pid: 4_194_305, start: "1" });
    (await acquireLock(path, "testing")).releaseSync();
    // Our own pid, but another process's start time: the pid was reused.
    await write({ pid: process.pid, start: "1" });
    (await acquireLock(path, "testing")).releaseSync();
    // A live process (this test's own parent) holds it.
    await write({ pid: process.ppid, start: null });
    await assert.rejects(
      acquireLock(path, "testing"),
      (e) => isPmaError(e, "LOCKED") && e.message.includes(`pid ${process.ppid}`),
    );
    await write({ pid: 4_194_305, start: "1", host: "elsewhere" });
    await assert.rejects(
      acquireLock(path, "testing"),
      (e) => isPmaError(e, "LOCKED") && /another machine.*remove/.test(e.message),
    );
    await writeFile(path, "");
    await assert.rejects(
      acquireLock(path, "testing"),
      (e) => isPmaError(e, "LOCKED") && /being written/.test(e.message),
    );
    const old = new Date(Date.now() - 60_000);
    await utimes(path, old, old);
    const taken = await acquireLock(path, "testing");
    assert.equal(JSON.parse(await readFile(path, "utf8")).pid, process.pid);
    // A lock is released only by its owner: a file that is no longer ours stays.
    await write({ pid: process.ppid, start: null });
    await taken.release();
    assert.ok(existsSync(path));
  });

  test("a dead owner's temporary lock name (killed between link and unlink) goes with its stale lock; a foreign name does not", async () => {
    const path = join(tmp.dir, "leftover.lock");
    const token = "0123456789abcdef";
    const owner = { host: hostname(), pid: 4_194_305, start: "1", command: "pma x", since: "then", token };
    await writeFile(path, JSON.stringify(owner));
    await writeFile(`${path}.4194305-${token}.tmp`, JSON.stringify(owner));
    const unrelated = `${path}.4194305-not-a-token.tmp`;
    await writeFile(unrelated, "");
    (await acquireLock(path, "testing")).releaseSync();
    assert.deepEqual((await readdir(tmp.dir)).filter((n) => n.startsWith("leftover.lock")).sort(), [
      "leftover.lock.4194305-not-a-token.tmp",
    ]);
  });

  test("within one process, a second writer of the same target is refused too", async () => {
    const path = join(tmp.dir, "same.lock");
    const held = await acquireLock(path, "writing x");
    await assert.rejects(
      acquireLock(path, "writing x"),
      (e) => isPmaError(e, "LOCKED") && e.message.includes(`pid ${process.pid}`),
    );
    await held.release();
    assert.equal(existsSync(path), false);
  });
});
