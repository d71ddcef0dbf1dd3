/**
 * Question 3 (section 4.2, Fig. 4): SMA, WMA, EMA (alpha 0.1 and 0.2) and the
 * schedule-derived (WSM) coefficients, early and late in the dense run, each merging
 * the same N checkpoints V tokens apart.
 */
import { coefficientsFor, type MethodSpec } from "../merge/weights.js";
import type { LabContext } from "./context.js";
import { delta, NOISE_NATS, tokens } from "./format.js";
import type { ExperimentResult, Finding, Verdict } from "./result.js";
import { checkpointDir, denseSpec } from "./runs.js";

export const METHODS: { name: string; spec: MethodSpec }[] = [
  { name: "SMA", spec: { method: "sma" } },
  { name: "WMA", spec: { method: "wma" } },
  { name: "EMA a=0.1", spec: { method: "ema", alpha: 0.1 } },
  { name: "EMA a=0.2", spec: { method: "ema", alpha: 0.2 } },
  { name: "WSM 1-sqrt", spec: { method: "wsm", decay: "1-sqrt" } },
  { name: "WSM cosine", spec: { method: "wsm", decay: "cosine" } },
];

interface MethodsAt {
  step: number;
  latest: number;
  count: number;
  losses: { name: string; value: number; coefficients: number[] }[];
}

async function at(ctx: LabContext, dir: string, step: number): Promise<MethodsAt> {
  const { count, intervalSteps } = ctx.profile.window;
  const losses: MethodsAt["losses"] = [];
  let n = count;
  for (const m of METHODS) {
    const w = await ctx.window(dir, step, count, intervalSteps, m.spec);
    n = w.count;
    losses.push({ name: m.name, value: await ctx.heldout(await ctx.merged(w.inputs, m.spec)), coefficients: w.coefficients });
  }
  return { step, latest: await ctx.heldout(checkpointDir(dir, step)), count: n, losses };
}

function best(a: MethodsAt): { name: string; value: number } {
  return a.losses.reduce((x, y) => (y.value < x.value ? y : x));
}

export async function methods(ctx: LabContext): Promise<Omit<ExperimentResult, "seconds">> {
  const p = ctx.profile;
  const dir = await ctx.runs.ensure(denseSpec(p));
  ctx.progress.stage("methods", "early point");
  const early = await at(ctx, dir, p.earlyStep);
  ctx.progress.stage("methods", "late point");
  const late = await at(ctx, dir, p.denseSteps);
  const v = (a: MethodsAt, name: string) => a.losses.find((l) => l.name === name)!.value;
  const spread = (a: MethodsAt) => Math.max(...a.losses.map((l) => l.value)) - Math.min(...a.losses.map((l) => l.value));
  const allBeat = (a: MethodsAt) => a.losses.filter((l) => l.value < a.latest - NOISE_NATS).length;
  const earlyBest = best(early);
  const findings: Finding[] = [
    {
      id: "methods-all-improve",
      claim: "Every merging method improves on the latest checkpoint.",
      measured: `methods better than the latest by more than ${NOISE_NATS}: ${allBeat(early)}/${METHODS.length} early (${tokens(early.step * ctx.tps)}), ${allBeat(late)}/${METHODS.length} late (${tokens(late.step * ctx.tps)}).`,
      verdict: allBeat(early) === METHODS.length && allBeat(late) === METHODS.length ? "reproduced" : allBeat(early) + allBeat(late) > 0 ? "partly" : "not at this scale",
    },
    {
      id: "methods-wma-early",
      claim: "Early in training, weighting recent checkpoints more (WMA) works best, and EMA a=0.2 beats EMA a=0.1.",
      measured:
        `early: best ${earlyBest.name} (${earlyBest.value.toFixed(4)}); WMA minus SMA ${delta(v(early, "WMA") - v(early, "SMA"))}; ` +
        `EMA 0.2 minus EMA 0.1 ${delta(v(early, "EMA a=0.2") - v(early, "EMA a=0.1"))}.`,
      verdict: ((): Verdict => {
        const wmaBest = earlyBest.name === "WMA" || v(early, "WMA") - earlyBest.value <= NOISE_NATS;
        const emaOrder = v(early, "EMA a=0.2") < v(early, "EMA a=0.1");
        return wmaBest && emaOrder ? "reproduced" : wmaBest || emaOrder ? "partly" : "not at this scale";
      })(),
    },
    {
      id: "methods-converge-late",
      claim: "Late in training the differences between methods shrink.",
      measured: `spread between the best and worst method: ${spread(early).toFixed(4)} early, ${spread(late).toFixed(4)} late.`,
      verdict: spread(late) < spread(early) ? "reproduced" : "not at this scale",
    },
  ];
  // Differences from the latest checkpoint: the methods differ in the third decimal of a loss near 5.
  const group = (a: MethodsAt, label: string) => ({ name: `${label} (${tokens(a.step * ctx.tps)})`, bars: a.losses.map((l) => ({ name: l.name, value: l.value - a.latest })) });
  return {
    id: "methods",
    title: "Merging methods",
    paper: "Section 4.2, Fig. 4: SMA, WMA and EMA early and late in training.",
    setup:
      `The dense run's N=${p.window.count} checkpoints V=${tokens(p.window.intervalSteps * ctx.tps)} apart ending at ${tokens(early.step * ctx.tps)} (early) and ` +
      `${tokens(late.step * ctx.tps)} (late), merged with each method. EMA follows the recursion of Eq. 4 (oldest weight (1-a)^(N-1)); ` +
      `WSM coefficients are those that imitate decaying the LR by that shape over the window (pma merge --method wsm). ` +
      `Coefficients at N=${early.count}: ${METHODS.map((m) => `${m.name} [${coefficientsFor(m.spec, early.count).map((c) => c.toFixed(2)).join(", ")}]`).join("; ")}.`,
    findings,
    figures: [
      {
        kind: "bar",
        id: "methods",
        title: "Held-out loss by merging method",
        caption: `Each bar merges the same checkpoints with different coefficients; below zero is better than the latest checkpoint (${early.latest.toFixed(4)} early, ${late.latest.toFixed(4)} late).`,
        y: { label: "held-out loss minus latest checkpoint (nats)" },
        groups: [group(early, "early"), group(late, "late")],
      },
    ],
    tables: [
      {
        id: "methods",
        title: "Held-out loss by method",
        columns: ["point", "tokens", "latest", ...METHODS.map((m) => m.name)],
        rows: [early, late].map((a, i) => [i === 0 ? "early" : "late", a.step * ctx.tps, a.latest, ...a.losses.map((l) => l.value)]),
      },
    ],
  };
}
