// Every lab profile is self-consistent: experiment points fall on the runs' checkpoint
// grids and inside the runs, the default window fits before the earliest point it is
// used at, and the spike settings leave room before and after the spike.
import assert from "node:assert/strict";
import { test } from "node:test";
import { labProfile, PROFILE_NAMES } from "../src/lab/profile.js";

for (const name of PROFILE_NAMES) {
  test(`lab profile ${name} is consistent`, () => {
    const p = labProfile(name);
    const onDense = (step: number, what: string): void => {
      assert.ok(
        Number.isInteger(step) && step > 0 && step <= p.denseSteps,
        `${what} ${step} outside the dense run`,
      );
      assert.equal(step % p.denseCheckpointEvery, 0, `${what} ${step} is not on the dense checkpoint grid`);
    };
    const onMoe = (step: number, what: string): void => {
      assert.ok(step > 0 && step <= p.moeSteps, `${what} ${step} outside the MoE run`);
      assert.equal(step % p.moeCheckpointEvery, 0, `${what} ${step} is not on the MoE checkpoint grid`);
    };
    onDense(p.denseSteps, "dense end");
    onMoe(p.moeSteps, "MoE end");
    onDense(p.stable.fromStep, "stable.fromStep");
    onMoe(p.stable.moeFromStep, "stable.moeFromStep");
    onDense(p.anneal.forkStep, "anneal.forkStep");
    onDense(p.earlyStep, "earlyStep");
    onMoe(p.spike.atStep, "spike.atStep");
    assert.equal(
      p.window.intervalSteps % p.denseCheckpointEvery,
      0,
      "V is not a whole number of checkpoint spacings",
    );
    // The default merge ending at the first stable point has all its N checkpoints.
    assert.ok(
      p.stable.fromStep - (p.window.count - 1) * p.window.intervalSteps > 0,
      "window does not fit at fromStep",
    );
    assert.ok(p.spike.atStep >= 3 * p.moeCheckpointEvery, "PMA-init needs 3 checkpoints before the spike");
    assert.ok(p.anneal.forkStep < p.denseSteps && p.warmupSteps < p.stable.fromStep);
    assert.ok(p.seeds >= 1 && Number.isInteger(p.seeds));
    const s = p.spontaneous;
    assert.equal(s.steps % s.checkpointEvery, 0, "the spontaneous runs end on their checkpoint grid");
    assert.ok(
      s.warmupSteps < s.steps && s.seeds >= 1 && s.lr > p.lr,
      "spontaneous: a higher LR than the profile's",
    );
  });
}

test("the standard profile trains at least 4x the quick profile's tokens, over 3 seeds", () => {
  const quick = labProfile("quick");
  const standard = labProfile("standard");
  assert.ok(standard.denseSteps >= 4 * quick.denseSteps && standard.moeSteps >= 4 * quick.moeSteps);
  assert.deepEqual(standard.data, quick.data);
  assert.equal(standard.seeds, 3);
});
