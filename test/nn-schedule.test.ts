import assert from "node:assert/strict";
import { test } from "node:test";
import type { ScheduleSpec } from "../src/nn/schedule.js";
import { lrAt, parseSchedule, phaseAt, scheduleEnd } from "../src/nn/schedule.js";

const near = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

test("constant: linear warmup from 0, then flat", () => {
  const s: ScheduleSpec = { kind: "constant", lr: 3e-4, warmupTokens: 1000 };
  near(lrAt(s, 0), 0);
  near(lrAt(s, 250), 0.75e-4);
  near(lrAt(s, 999), 3e-4 * 0.999);
  near(lrAt(s, 1000), 3e-4);
  near(lrAt(s, 1e12), 3e-4);
  assert.equal(scheduleEnd(s), Infinity);
  near(lrAt({ kind: "constant", lr: 1 }, 0), 1);
});

test("cosine: warmup, half-cosine to lrMin over the span, then lrMin", () => {
  const s: ScheduleSpec = { kind: "cosine", lr: 1, lrMin: 0.1, warmupTokens: 10, decayTokens: 100 };
  near(lrAt(s, 5), 0.5);
  near(lrAt(s, 10), 1);
  near(lrAt(s, 35), 0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI / 4)));
  near(lrAt(s, 60), 0.55);
  near(lrAt(s, 110), 0.1);
  near(lrAt(s, 5000), 0.1);
  assert.equal(scheduleEnd(s), 110);
  assert.equal(phaseAt(s, 9).phase, "warmup");
  assert.equal(phaseAt(s, 10).phase, "decay");
  assert.equal(phaseAt(s, 110).phase, "done");
});

test("warmup-stable-decay: linear and cosine decay at the phase boundaries", () => {
  const lin: ScheduleSpec = {
    kind: "wsd",
    lr: 2,
    lrMin: 0.2,
    warmupTokens: 10,
    stableTokens: 50,
    decayTokens: 40,
    decay: "linear",
  };
  near(lrAt(lin, 10), 2);
  near(lrAt(lin, 59), 2);
  near(lrAt(lin, 60), 2);
  near(lrAt(lin, 70), 2 - 1.8 * 0.25);
  near(lrAt(lin, 80), 1.1);
  near(lrAt(lin, 100), 0.2);
  near(lrAt(lin, 1e9), 0.2);
  assert.deepEqual(phaseAt(lin, 30), { phase: "stable", into: 20 });
  assert.deepEqual(phaseAt(lin, 75), { phase: "decay", into: 15 });
  assert.equal(scheduleEnd(lin), 100);
  const cos: ScheduleSpec = { ...lin, decay: "cosine" };
  near(lrAt(cos, 60), 2);
  near(lrAt(cos, 80), 1.1); // the cosine midpoint equals the linear one
  near(lrAt(cos, 70), 0.2 + 1.8 * 0.5 * (1 + Math.SQRT1_2));
  near(lrAt(cos, 100), 0.2);
});

test("a schedule forked at startTokens is the same curve shifted", () => {
  const base: ScheduleSpec = {
    kind: "wsd",
    lr: 1,
    lrMin: 0,
    warmupTokens: 0,
    stableTokens: 0,
    decayTokens: 1e9,
    decay: "cosine",
  };
  const fork: ScheduleSpec = { ...base, startTokens: 1.4e12 };
  for (const x of [0, 1, 2.5e8, 5e8, 1e9, 2e9]) near(lrAt(fork, 1.4e12 + x), lrAt(base, x));
  near(lrAt(fork, 1e12), 1); // before the fork: held at the starting value
  assert.equal(phaseAt(fork, 1e12).phase, "before");
  assert.equal(scheduleEnd(fork), 1.4e12 + 1e9);
});

test("schedules serialise to JSON and parse back; bad descriptions are refused", () => {
  const specs: ScheduleSpec[] = [
    { kind: "constant", lr: 1e-3, warmupTokens: 5, startTokens: 0 },
    { kind: "cosine", lr: 1e-3, lrMin: 1e-5, warmupTokens: 0, decayTokens: 10, startTokens: 7 },
    {
      kind: "wsd",
      lr: 1e-3,
      lrMin: 0,
      warmupTokens: 1,
      stableTokens: 2,
      decayTokens: 3,
      decay: "linear",
      startTokens: 0,
    },
  ];
  for (const s of specs) assert.deepEqual(parseSchedule(JSON.parse(JSON.stringify(s))), s);
  assert.deepEqual(parseSchedule({ kind: "constant", lr: 1 }), {
    kind: "constant",
    lr: 1,
    warmupTokens: 0,
    startTokens: 0,
  });
  const bad: unknown[] = [
    null,
    { kind: "linear", lr: 1 },
    { kind: "constant", lr: -1 },
    { kind: "constant", lr: 1, warmup: 5 },
    { kind: "cosine", lr: 1, lrMin: 0, decayTokens: 0 },
    { kind: "wsd", lr: 1, lrMin: 0, stableTokens: 1, decayTokens: 1 },
    { kind: "wsd", lr: 1, lrMin: 0, stableTokens: 1, decayTokens: 1, decay: "cosine", startTokens: "0" },
  ];
  for (const b of bad) assert.throws(() => parseSchedule(b), { code: "CONFIG_INVALID" }, JSON.stringify(b));
});
