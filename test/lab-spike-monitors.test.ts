// The logit monitors of a lab run (lab/spike-monitors.ts): read back from a log.jsonl
// the trainer wrote, and the reading of which instability moved before a spike.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { readMechanism, readMonitors, type MonitorPoint } from "../src/lab/spike-monitors.js";

const point = (step: number, attn: number, logZ: number): MonitorPoint => ({
  step,
  loss: 5,
  attn,
  logZ,
  outMax: 10,
});

test("log.jsonl step lines: monitors by step, a resumed run's later line wins, nulls kept as null", async () => {
  const dir = await mkdtemp(join(tmpdir(), "pma-monitors-"));
  try {
    const lines = [
      { type: "step", step: 1, loss: 8, attn_logit_max: 0.5, output_log_z: 8.3, output_logit_max: 2 },
      { type: "eval", step: 1, val_loss: 8 },
      { type: "step", step: 2, loss: 7, attn_logit_max: 3, output_log_z: 8.1, output_logit_max: 3 },
      // A NaN loss is written as null by the trainer; monitors of an older pma are absent.
      { type: "step", step: 3, loss: null, grad_norm: null },
      { type: "step", step: 2, loss: 6.5, attn_logit_max: 4, output_log_z: 8, output_logit_max: 3.5 },
    ];
    await writeFile(join(dir, "log.jsonl"), lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
    assert.deepEqual(await readMonitors(dir), [
      { step: 1, loss: 8, attn: 0.5, logZ: 8.3, outMax: 2 },
      { step: 2, loss: 6.5, attn: 4, logZ: 8, outMax: 3.5 },
      { step: 3, loss: null, attn: null, logZ: null, outMax: null },
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("mechanism: which monitor moved in the lookback before the onset", () => {
  const steps = Array.from({ length: 40 }, (_, i) => i + 1);
  // Attention logits double between step 10 and step 30; log Z stays put.
  const attn = steps.map((s) => point(s, s <= 10 ? 20 : 20 + (s - 10), 8));
  const a = readMechanism(attn, 30, 20);
  assert.equal(a.before.step, 10);
  assert.equal(a.onset.step, 30);
  assert.equal(a.verdict, "attention-logit growth");
  // log Z falls by 2 nats; attention steady.
  const logZ = steps.map((s) => point(s, 20, 8 - Math.max(0, s - 10) / 10));
  assert.equal(readMechanism(logZ, 30, 20).verdict, "output-logit divergence");
  const both = steps.map((s) => point(s, 20 + Math.max(0, s - 10), 8 - Math.max(0, s - 10) / 10));
  assert.equal(readMechanism(both, 30, 20).verdict, "attention-logit growth and output-logit divergence");
  const calm = steps.map((s) => point(s, 20 + s / 10, 8));
  assert.equal(readMechanism(calm, 30, 20).verdict, "neither monitor moved before the onset");
  // Below the thresholds (x1.5, 1 nat) nothing is named: growth by 40%, drift of 0.9.
  const under = steps.map((s) =>
    point(s, s <= 10 ? 20 : 20 + (s - 10) * 0.4, 8 - Math.max(0, s - 10) * 0.045),
  );
  assert.equal(readMechanism(under, 30, 20).verdict, "neither monitor moved before the onset");
  // A lookback before the log's first step reads the first point.
  assert.equal(readMechanism(attn, 5, 20).before.step, 1);
});
