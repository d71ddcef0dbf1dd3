import { test } from "node:test";
import assert from "node:assert/strict";
import { isPmaError } from "../src/common/errors.js";
import type { LogPoint } from "../src/trajectory/logs.js";
import {
  detectSpikes,
  healthyCheckpointsBefore,
  lastHealthyBefore,
  type SpikeEvent,
} from "../src/trajectory/spikes.js";

// ---- Synthetic but realistic training curves.

/** mulberry32: small, seedable, good enough for noise. */
function rng(seed: number): { u: () => number; n: () => number } {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const n = () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return { u, n };
}

interface CurveSpec {
  steps?: number;
  seed: number;
  /** Linear LR warmup, in steps. */
  warmup?: number;
  schedule?: "constant" | "wsd" | "cosine";
  /** Noise standard deviation as a fraction of the loss (heteroscedastic). */
  noise?: number;
  /** Probability of a single-step outlier of 2 to 5 noise sigmas. */
  outliers?: number;
  /** Log every this many steps. */
  every?: number;
}

/**
 * Loss as a power law in the area under the LR schedule, L = a + b (1 + S/s0)^-c, which
 * starts near ln(32k) and falls fast early, plus an annealing bonus while the LR decays
 * (so a WSD decay phase drops faster than the power law), plus noise proportional to the
 * loss and occasional single-step outliers. Grad norm decays from a large early value,
 * with log-normal noise.
 */
function curve(spec: CurveSpec): { points: LogPoint[]; base: Map<number, number> } {
  const {
    steps = 3000,
    seed,
    warmup = 0,
    schedule = "constant",
    noise = 0.01,
    outliers = 0.01,
    every = 1,
  } = spec;
  const r = rng(seed);
  const lr = (t: number) => {
    if (t <= warmup) return t / warmup;
    if (schedule === "wsd") {
      const d0 = Math.floor(steps * 0.8);
      return t < d0 ? 1 : Math.max(0, 1 - (t - d0) / (steps - d0));
    }
    if (schedule === "cosine")
      return 0.1 + 0.45 * (1 + Math.cos((Math.PI * (t - warmup)) / (steps - warmup)));
    return 1;
  };
  let area = 0;
  let anneal = 0;
  const points: LogPoint[] = [];
  const base = new Map<number, number>();
  for (let t = 1; t <= steps; t++) {
    const l = lr(t);
    area += l;
    if (t > warmup) anneal = 0.99 * anneal + 0.01 * (1 - l);
    const b = 2.0 + 8.4 * Math.pow(1 + area / 20, -0.5) - 0.3 * anneal;
    const sigma = noise * b;
    let loss = b + sigma * r.n();
    if (r.u() < outliers) loss += sigma * (2 + 3 * r.u());
    const gradNorm = (0.25 + 2 * Math.exp(-t / 150)) * Math.exp(0.15 * r.n());
    if (t % every === 0) {
      points.push({ step: t, loss, gradNorm, lr: 3e-4 * l });
      base.set(t, b);
    }
  }
  return { points, base };
}

/** Adds a spike that rises over `rise` steps to +amp, then decays with time constant tau. */
function addTransient(points: LogPoint[], start: number, amp: number, tau: number, rise = 1): void {
  for (const p of points) {
    const d = p.step - start;
    if (d < 0) continue;
    p.loss! += d < rise ? (amp * (d + 1)) / rise : amp * Math.exp(-(d - rise + 1) / tau);
  }
}

/** The loss jumps up by `amp` over a few steps and stays there. */
function addDivergence(points: LogPoint[], start: number, amp: number): void {
  for (const p of points) if (p.step >= start) p.loss! += amp * (1 - Math.exp(-(p.step - start + 1) / 3));
}

function addGradSpike(points: LogPoint[], from: number, to: number, factor: number): void {
  for (const p of points) if (p.step >= from && p.step <= to) p.gradNorm! *= factor;
}

const describe = (events: SpikeEvent[]) =>
  JSON.stringify(events.map((e) => [e.kind, e.startStep, e.peakStep, e.endStep, e.anomalousPoints]));

// ---- Clean curves

test("clean curves raise no alarm: seeds x schedules x noise levels, with outliers", () => {
  const schedules = [
    { schedule: "constant" as const, warmup: 0 },
    { schedule: "constant" as const, warmup: 200 },
    { schedule: "wsd" as const, warmup: 100 },
    { schedule: "cosine" as const, warmup: 100 },
  ];
  for (const s of schedules) {
    for (let seed = 1; seed <= 6; seed++) {
      for (const noise of [0.003, 0.01, 0.02]) {
        const { points } = curve({ ...s, seed, noise, outliers: 0.02 });
        const rep = detectSpikes(points);
        assert.equal(
          rep.events.length,
          0,
          `${s.schedule} warmup ${s.warmup} seed ${seed} noise ${noise}: ${describe(rep.events)}`,
        );
        assert.equal(rep.lossPoints, points.length);
      }
    }
  }
});

test("a sparse log (every 50 steps) of a fast-falling curve raises no alarm", () => {
  for (let seed = 1; seed <= 6; seed++) {
    const { points } = curve({
      seed,
      steps: 50_000,
      every: 50,
      schedule: seed % 2 ? "wsd" : "cosine",
      warmup: 500,
      noise: 0.01,
    });
    const rep = detectSpikes(points);
    assert.equal(rep.events.length, 0, `seed ${seed}: ${describe(rep.events)}`);
  }
});

test("the level tracks a falling curve: a spike late in the run is judged against the recent loss", () => {
  const { points, base } = curve({ seed: 3, noise: 0.01, steps: 3000 });
  addTransient(points, 2000, 1.0, 10);
  const [ev] = detectSpikes(points).events;
  assert.ok(ev);
  // The trailing median lags the descent by about half a window: a few hundredths here.
  assert.ok(Math.abs(ev.level - base.get(2000)!) < 0.05, `level ${ev.level} vs curve ${base.get(2000)}`);
  assert.ok(ev.level < base.get(500)! - 0.3, "the level is not stuck at the early loss");
});

test("a near-noiseless flat curve does not alarm on a 0.1% wiggle, but does on a 5% jump", () => {
  const r = rng(9);
  const flat = () => Array.from({ length: 400 }, (_, i) => ({ step: i + 1, loss: 2 + 1e-4 * r.n() }));
  const wiggle = flat();
  for (let i = 200; i < 210; i++) wiggle[i]!.loss! += 0.002;
  assert.equal(detectSpikes(wiggle).events.length, 0);
  // Each guard alone is enough: the absolute floor (0.01 nats) and the relative one (2%).
  assert.equal(detectSpikes(wiggle, { minRelJump: 0 }).events.length, 0);
  assert.equal(detectSpikes(wiggle, { minAbsJump: 0 }).events.length, 0);
  assert.ok(
    detectSpikes(wiggle, { minAbsJump: 0, minRelJump: 0 }).events.length > 0,
    "without guards, 20 sigmas alarms",
  );
  const jump = flat();
  for (let i = 200; i < 210; i++) jump[i]!.loss! += 0.1;
  const events = detectSpikes(jump).events;
  assert.equal(events.length, 1, describe(events));
  assert.equal(events[0]!.startStep, 201);
  assert.equal(events[0]!.endStep, 211);
  assert.equal(events[0]!.kind, "transient");
});

// ---- Injected events

test("injected transient spikes and divergences are found near their start and classified", () => {
  // Spike heights in noise sigmas at the spike (loss near 2.8): 25 sigmas is 0.35 nats at
  // the quietest noise and 1.4 at the noisiest; decays from a few steps to a hundred.
  const grid: { sigmas: number; tau: number; noise: number }[] = [];
  for (const sigmas of [25, 50, 150])
    for (const tau of [3, 10, 30]) for (const noise of [0.005, 0.01, 0.02]) grid.push({ sigmas, tau, noise });
  let cases = 0;
  grid.forEach(({ sigmas, tau, noise }, seed) => {
    const r = rng(1000 + seed);
    const rise = seed % 4 === 0 ? 4 : 1;
    const amp = sigmas * noise * 2.8;
    const { points } = curve({ seed, noise, warmup: 100, steps: 3000, outliers: 0.01 });
    const s = 700 + Math.floor(r.u() * 900);
    const d = 2100 + Math.floor(r.u() * 500);
    addTransient(points, s, amp, tau, rise);
    addGradSpike(points, s - 1, s + 1, 8);
    const nan = seed % 5 === 0;
    if (nan) {
      for (const p of points) if (p.step >= d) p.loss = Number.NaN;
    } else {
      addDivergence(points, d, 1.2);
    }
    const rep = detectSpikes(points);
    const label = `seed ${seed} noise ${noise} sigmas ${sigmas} tau ${tau} rise ${rise} s ${s} d ${d}: ${describe(rep.events)}`;
    assert.equal(rep.events.length, 2, label);
    const [t, v] = rep.events as [SpikeEvent, SpikeEvent];
    assert.equal(t.kind, "transient", label);
    assert.ok(t.startStep >= s && t.startStep <= s + 3, label);
    assert.ok(t.peakStep >= t.startStep && t.peakStep <= s + rise + 2, label);
    assert.ok(t.endStep !== null && t.endStep > t.peakStep && t.endStep < s + 10 * tau + 20, label);
    assert.equal(t.ongoing, false);
    assert.ok(t.gradNormSpike, label);
    assert.equal(t.onsetStep, s - 1, label);
    assert.equal(t.lastHealthyStep, s - 2, label);
    assert.equal(v.kind, "divergence", label);
    assert.ok(v.startStep >= d && v.startStep <= d + 3, label);
    assert.equal(v.endStep, null, label);
    assert.equal(v.gradNormSpike, false, label);
    if (nan) assert.ok(Number.isNaN(v.peakLoss) && v.startStep === d && v.peakStep === d, label);
    cases++;
  });
  assert.equal(cases, 27);
});

test("the slowly decaying tail of a spike, hovering near the band's edge, stays one event", () => {
  for (let seed = 1; seed <= 12; seed++) {
    const { points } = curve({ seed, noise: 0.01, steps: 2000 });
    addTransient(points, 1000, 0.8, 40);
    const events = detectSpikes(points).events;
    assert.equal(events.length, 1, `seed ${seed}: ${describe(events)}`);
    assert.equal(events[0]!.kind, "transient");
  }
});

test("a log that ends during a spike reports it as ongoing", () => {
  const { points } = curve({ seed: 4, steps: 1000 });
  addTransient(points, 990, 1.5, 50);
  const [ev, ...rest] = detectSpikes(points).events;
  assert.equal(rest.length, 0);
  assert.ok(ev && ev.ongoing && ev.kind === "divergence" && ev.endStep === null && ev.startStep === 990);
});

test("after a divergence the level is relearned, and a later spike on the new level is found", () => {
  const { points } = curve({ seed: 5, steps: 3000 });
  addDivergence(points, 1000, 1.5);
  addTransient(points, 2000, 1.5, 5);
  const events = detectSpikes(points).events;
  assert.deepEqual(
    events.map((e) => [e.kind, e.startStep]),
    [
      ["divergence", 1000],
      ["transient", 2000],
    ],
    describe(events),
  );
});

test("grad-norm spikes are flagged on their own, without a loss event", () => {
  const { points } = curve({ seed: 6, steps: 2000 });
  addGradSpike(points, 1500, 1500, 20);
  points[1700]!.gradNorm = Number.POSITIVE_INFINITY; // fp16 overflow: a skipped step, listed on its own
  const rep = detectSpikes(points);
  assert.equal(rep.events.length, 0);
  assert.deepEqual(
    rep.gradNormSpikes.map((g) => g.step),
    [1500],
  );
  assert.deepEqual(rep.gradNormOverflows, [1701]);
  assert.ok(rep.gradNormSpikes[0]!.gradNorm > 10 * rep.gradNormSpikes[0]!.level);
});

// ---- Edge cases

test("edge cases: empty and short logs, NaN and Inf, eval-only points, unsorted input", () => {
  assert.deepEqual(detectSpikes([]), {
    events: [],
    gradNormSpikes: [],
    gradNormOverflows: [],
    gradNormsIgnored: 0,
    lossPoints: 0,
  });
  const short = [3, 2.9, 2.95, 2.85, 2.9].map((loss, i) => ({ step: i + 1, loss }));
  assert.equal(detectSpikes(short).events.length, 0);

  const nan = short.map((p) => ({ ...p }));
  nan[2]!.loss = Number.NaN;
  const [ev] = detectSpikes(nan).events;
  assert.ok(ev);
  assert.equal(ev.kind, "divergence"); // a NaN loss is a divergence, even when later values look fine
  assert.equal(ev.startStep, 3);
  assert.equal(ev.lastHealthyStep, 2);
  assert.equal(ev.endStep, 4);

  const inf = short.map((p) => ({ ...p }));
  inf[0]!.loss = Number.POSITIVE_INFINITY;
  const [ev2] = detectSpikes(inf).events;
  assert.ok(
    ev2 &&
      ev2.kind === "divergence" &&
      ev2.startStep === 1 &&
      ev2.lastHealthyStep === null &&
      ev2.peakLoss === Number.POSITIVE_INFINITY,
  );

  // A run that goes NaN and stays NaN is one event.
  const { points } = curve({ seed: 8, steps: 1500 });
  for (const p of points) if (p.step >= 700) p.loss = Number.NaN;
  const events = detectSpikes(points).events;
  assert.deepEqual(
    events.map((e) => [e.kind, e.startStep, e.endStep]),
    [["divergence", 700, null]],
  );

  // Points without a loss (eval-only) are skipped; input order does not matter.
  const mixed: LogPoint[] = [...curve({ seed: 2, steps: 600 }).points];
  addTransient(mixed, 400, 2, 5);
  mixed.push({ step: 250, evalLoss: 3 }, { step: 10_000, evalLoss: 2 });
  mixed.reverse();
  const rep = detectSpikes(mixed);
  assert.equal(rep.lossPoints, 600);
  assert.deepEqual(
    rep.events.map((e) => [e.kind, e.startStep]),
    [["transient", 400]],
  );
});

test("options are validated", () => {
  assert.throws(
    () => detectSpikes([], { window: 0 }),
    (e) => isPmaError(e, "USAGE"),
  );
  assert.throws(
    () => detectSpikes([], { k: -1 }),
    (e) => isPmaError(e, "USAGE"),
  );
  assert.throws(
    () => detectSpikes([], { window: 5, minHealthy: 10 }),
    (e) => isPmaError(e, "USAGE"),
  );
});

// ---- Choosing a checkpoint to restart from

test("lastHealthyBefore picks the newest checkpoint at or before the last healthy step, minus a margin", () => {
  const { points } = curve({ seed: 7, steps: 2000 });
  addDivergence(points, 1234, 2);
  const [ev] = detectSpikes(points).events;
  assert.ok(ev && ev.startStep === 1234 && ev.lastHealthyStep === 1233);
  const ckpts = Array.from({ length: 20 }, (_, i) => ({ step: (i + 1) * 100, tokens: (i + 1) * 100 * 4096 }));
  assert.deepEqual(lastHealthyBefore(ev, ckpts), { step: 1200, tokens: 1200 * 4096 });
  assert.equal(lastHealthyBefore(ev, ckpts, { margin: 150 })!.step, 1000);
  assert.deepEqual(
    healthyCheckpointsBefore(ev, [...ckpts].reverse(), 3).map((c) => c.step),
    [1200, 1100, 1000],
  );
  assert.equal(
    lastHealthyBefore(
      ev,
      ckpts.filter((c) => c.step > 1233),
    ),
    null,
  );

  // A grad-norm explosion just before the loss moves the onset, and the checkpoint, earlier.
  const withGrad = curve({ seed: 7, steps: 2000 }).points;
  addDivergence(withGrad, 1201, 2);
  addGradSpike(withGrad, 1200, 1203, 10);
  const [ev2] = detectSpikes(withGrad).events;
  assert.ok(
    ev2 &&
      ev2.startStep === 1201 &&
      ev2.onsetStep === 1200 &&
      ev2.lastHealthyStep === 1199 &&
      ev2.gradNormSpike,
  );
  assert.equal(lastHealthyBefore(ev2, ckpts)!.step, 1100);

  // No healthy point before the event: no checkpoint can be vouched for.
  const nanFirst: LogPoint[] = [{ step: 1, loss: Number.NaN }];
  const [ev3] = detectSpikes(nanFirst).events;
  assert.ok(ev3);
  assert.equal(lastHealthyBefore(ev3, [{ step: 0, tokens: 0 }]), null);
});

// ---- Grad norms that are not a positive finite number (docs/pma-init.md)

/**
 * A healthy run as RL fine-tuning or fp16 training logs it: 40% of the grad norms are
 * exactly 0 (no gradient / skipped step), 1% are Infinity or NaN (loss-scale overflow),
 * a few are the sentinel -1. Zeros used to become the window's median, after which
 * more than half of all points were flagged.
 */
function zeroHeavyRun(seed: number): LogPoint[] {
  const { points } = curve({ seed, steps: 1000 });
  const r = rng(seed + 100);
  for (const p of points) {
    const u = r.u();
    if (u < 0.4) p.gradNorm = 0;
    else if (u < 0.405) p.gradNorm = Number.POSITIVE_INFINITY;
    else if (u < 0.41) p.gradNorm = Number.NaN;
    else if (u < 0.415) p.gradNorm = -1;
  }
  return points;
}

test("grad norms: a healthy run with many exact zeros and some Inf/NaN flags nearly nothing", () => {
  for (const seed of [21, 22, 23]) {
    const points = zeroHeavyRun(seed);
    const rep = detectSpikes(points);
    assert.equal(rep.events.length, 0, `seed ${seed}: ${describe(rep.events)}`);
    assert.ok(
      rep.gradNormSpikes.length <= 5,
      `seed ${seed}: ${rep.gradNormSpikes.length} of 1000 grad norms flagged`,
    );
    const zeros = points.filter((p) => p.gradNorm === 0 || p.gradNorm === -1).length;
    const overflows = points.filter((p) => !Number.isFinite(p.gradNorm!)).map((p) => p.step);
    assert.equal(rep.gradNormsIgnored, zeros);
    assert.deepEqual(rep.gradNormOverflows, overflows);
    assert.ok(zeros > 350 && overflows.length > 0, "the fixture has the pattern it is meant to have");
  }
});

test("grad norms: among zeros and overflows, a real 20x grad-norm spike is still found", () => {
  const points = zeroHeavyRun(24);
  const at = points.findIndex((p, i) => i > 600 && p.gradNorm! > 0 && Number.isFinite(p.gradNorm!));
  points[at]!.gradNorm! *= 20;
  const rep = detectSpikes(points);
  assert.ok(
    rep.gradNormSpikes.some((g) => g.step === points[at]!.step),
    JSON.stringify(rep.gradNormSpikes),
  );
  assert.ok(rep.gradNormSpikes.length <= 5);
});
