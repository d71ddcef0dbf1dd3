import { PmaError } from "../common/errors.js";

/**
 * Learning-rate schedules as pure functions of the token count, described by plain
 * JSON so a run (or a fork of a run) can record exactly which schedule it used.
 *
 * Every schedule starts at `startTokens` (default 0): a run forked from a checkpoint
 * at 1.4T tokens with its own decay is `{..., startTokens: 1.4e12}`. Before the start
 * the schedule holds its starting value.
 *
 * Warmup is linear from 0: lr * elapsed / warmupTokens. Trainers should pass the token
 * count at the *end* of the step being taken, so the first step uses a small positive
 * rate (as nanoGPT's (it + 1) / warmup) rather than 0.
 */
export type ScheduleSpec = ConstantSchedule | CosineSchedule | WsdSchedule;

export interface ConstantSchedule {
  kind: "constant";
  lr: number;
  warmupTokens?: number;
  startTokens?: number;
}

/** Warmup, then cosine from lr to lrMin over decayTokens, then lrMin. */
export interface CosineSchedule {
  kind: "cosine";
  lr: number;
  lrMin: number;
  warmupTokens?: number;
  decayTokens: number;
  startTokens?: number;
}

/** Warmup-stable-decay: warmup, lr held for stableTokens, decay to lrMin, then lrMin. */
export interface WsdSchedule {
  kind: "wsd";
  lr: number;
  lrMin: number;
  warmupTokens?: number;
  stableTokens: number;
  decayTokens: number;
  decay: "cosine" | "linear";
  startTokens?: number;
}

export type SchedulePhase = "before" | "warmup" | "stable" | "decay" | "done";

function cosineBetween(hi: number, lo: number, q: number): number {
  return lo + (hi - lo) * 0.5 * (1 + Math.cos(Math.PI * q));
}

/** The phase of the schedule at `tokens` and the tokens elapsed within that phase. */
export function phaseAt(s: ScheduleSpec, tokens: number): { phase: SchedulePhase; into: number } {
  const start = s.startTokens ?? 0;
  if (tokens < start) return { phase: "before", into: 0 };
  let e = tokens - start;
  const warm = s.warmupTokens ?? 0;
  if (e < warm) return { phase: "warmup", into: e };
  e -= warm;
  if (s.kind === "constant") return { phase: "stable", into: e };
  if (s.kind === "wsd") {
    if (e < s.stableTokens) return { phase: "stable", into: e };
    e -= s.stableTokens;
  }
  if (e < s.decayTokens) return { phase: "decay", into: e };
  return { phase: "done", into: e - s.decayTokens };
}

/** Learning rate after `tokens` tokens of training. */
export function lrAt(s: ScheduleSpec, tokens: number): number {
  const { phase, into } = phaseAt(s, tokens);
  switch (phase) {
    case "before":
      return (s.warmupTokens ?? 0) > 0 ? 0 : s.lr;
    case "warmup":
      return (s.lr * into) / s.warmupTokens!;
    case "stable":
      return s.lr;
    case "decay": {
      const d = s as CosineSchedule | WsdSchedule;
      const q = into / d.decayTokens;
      if (d.kind === "wsd" && d.decay === "linear") return d.lr + (d.lrMin - d.lr) * q;
      return cosineBetween(d.lr, d.lrMin, q);
    }
    case "done":
      return s.kind === "constant" ? s.lr : s.lrMin;
  }
}

/** Token count at which the schedule reaches its final value (Infinity: constant). */
export function scheduleEnd(s: ScheduleSpec): number {
  const base = (s.startTokens ?? 0) + (s.warmupTokens ?? 0);
  if (s.kind === "constant") return Infinity;
  return base + (s.kind === "wsd" ? s.stableTokens : 0) + s.decayTokens;
}

function bad(msg: string): never {
  throw new PmaError("CONFIG_INVALID", `schedule: ${msg}`);
}

/**
 * Validates a JSON schedule description (e.g. read back from a run's metadata) and
 * returns it typed, with optional fields filled in. Unknown keys are refused so a typo
 * cannot silently fall back to a default.
 */
export function parseSchedule(json: unknown): ScheduleSpec {
  if (json === null || typeof json !== "object" || Array.isArray(json)) bad("must be a JSON object");
  const o = json as Record<string, unknown>;
  const allowed: Record<string, string[]> = {
    constant: ["kind", "lr", "warmupTokens", "startTokens"],
    cosine: ["kind", "lr", "lrMin", "warmupTokens", "decayTokens", "startTokens"],
    wsd: ["kind", "lr", "lrMin", "warmupTokens", "stableTokens", "decayTokens", "decay", "startTokens"],
  };
  const kind = o["kind"];
  if (typeof kind !== "string" || !(kind in allowed))
    bad(`kind must be "constant", "cosine" or "wsd", got ${JSON.stringify(kind)}`);
  for (const k of Object.keys(o))
    if (!allowed[kind]!.includes(k)) bad(`unknown field "${k}" for kind "${kind}"`);
  const num = (k: string, opt: { min: number; positive?: boolean; optional?: boolean }): number => {
    const v = o[k];
    if (v === undefined && opt.optional === true) return 0;
    if (typeof v !== "number" || !Number.isFinite(v))
      bad(`${k} must be a finite number, got ${JSON.stringify(v)}`);
    if (v < opt.min || (opt.positive === true && v <= 0))
      bad(`${k} must be ${opt.positive === true ? "> 0" : `>= ${opt.min}`}, got ${v}`);
    return v;
  };
  const lr = num("lr", { min: 0 });
  const warmupTokens = num("warmupTokens", { min: 0, optional: true });
  const startTokens = num("startTokens", { min: 0, optional: true });
  if (kind === "constant") return { kind, lr, warmupTokens, startTokens };
  const lrMin = num("lrMin", { min: 0 });
  const decayTokens = num("decayTokens", { min: 0, positive: true });
  if (kind === "cosine") return { kind, lr, lrMin, warmupTokens, decayTokens, startTokens };
  const stableTokens = num("stableTokens", { min: 0 });
  const decay = o["decay"];
  if (decay !== "cosine" && decay !== "linear")
    bad(`decay must be "cosine" or "linear", got ${JSON.stringify(decay)}`);
  return { kind: "wsd", lr, lrMin, warmupTokens, stableTokens, decayTokens, decay, startTokens };
}
