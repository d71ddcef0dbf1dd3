import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";
import { labProgressLog } from "../src/cli/lab-progress-log.js";

test("lab progress without a terminal: plain lines for job start/end and experiment end, a periodic 'running' line", async () => {
  const out: string[] = [];
  const p = labProgressLog("quick", 30, (s) => out.push(s));
  try {
    const job = p.line("dense");
    p.stage("stable-merge", "waiting for runs");
    job.update("step 1/360");
    job.update("step 2/360");
    await sleep(80);
    job.done();
    p.finished("stable-merge", 12.4, false);
    p.finished("methods", 3, true);
  } finally {
    p.stop();
  }
  const lines = out
    .join("")
    .split("\n")
    .filter((l) => l !== "");
  for (const l of lines) assert.match(l, /^pma lab \(quick\) \d+:\d\d /, l);
  const texts = lines.map((l) => l.replace(/^pma lab \(quick\) \d+:\d\d /, ""));
  assert.equal(
    texts.filter((t) => t === "train dense: started").length,
    1,
    "started once, at the first step",
  );
  assert.ok(
    texts.some((t) => t === "running: dense: step 2/360; stable-merge: waiting for runs"),
    texts.join("\n"),
  );
  assert.deepEqual(texts.slice(-3), ["train dense: done", "stable-merge: done in 12 s", "methods: cached"]);
  const count = out.length;
  await sleep(80);
  assert.equal(out.length, count, "nothing is printed after stop()");
});
