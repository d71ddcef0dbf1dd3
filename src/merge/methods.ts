/**
 * The merge methods, one entry each: name, one-line description, parameters (type,
 * default, range) and coefficient function. The command-line flags, usage text and
 * validation of merge/plan/init/watch (cli/method-flags.ts) and the method fields of
 * pma_merge.json are derived from this table, so every default is written here once.
 *
 * Adding a method: its coefficient function in weights.ts, one entry in MERGE_METHODS
 * (a new parameter also gets its field in MethodSpec), and its tests.
 */
import { PmaError } from "../common/errors.js";
import {
  customCoefficients,
  DECAY_SHAPES,
  EMA_ALPHA_RANGE,
  emaCoefficients,
  smaCoefficients,
  wmaCoefficients,
  wsmCoefficients,
  type DecayShape,
  type NumberRange,
} from "./weights.js";

/** A merge recipe's method and its parameters; parameters left out take their defaults. */
export interface MethodSpec {
  method: MergeMethod;
  /** EMA smoothing factor in (0, 1]. */
  alpha?: number;
  /** Custom weights, oldest checkpoint first. */
  weights?: number[];
  /** Custom weights are normalised to sum to 1 unless this is false. */
  normalize?: boolean;
  /** WSM: the learning-rate decay the merge stands in for. */
  decay?: DecayShape;
}

type ParamKey = Exclude<keyof MethodSpec, "method">;

interface ParamBase {
  key: ParamKey;
  /** The command-line flag, without dashes. */
  flag: string;
  help: string;
}

/** A number with a default and a valid range; recorded in pma_merge.json. */
export interface NumberParam extends ParamBase {
  kind: "number";
  placeholder: string;
  default: number;
  range: NumberRange;
  /** The value in a merge's one-line summary: " (alpha 0.2)". */
  describe(value: number): string;
}

/** One of a fixed list of words, with a default; recorded in pma_merge.json. */
export interface ChoiceParam extends ParamBase {
  kind: "choice";
  placeholder: string;
  default: string;
  choices: readonly string[];
  describe(value: string): string;
}

/** A comma-separated list of numbers, required; its flag alone selects the method. */
export interface NumbersParam extends ParamBase {
  kind: "numbers";
  placeholder: string;
}

/** On by default; the flag turns it off. */
export interface SwitchOffParam extends ParamBase {
  kind: "switch-off";
  default: true;
}

export type MethodParam = NumberParam | ChoiceParam | NumbersParam | SwitchOffParam;

export interface MethodEntry {
  name: string;
  description: string;
  params: readonly MethodParam[];
  /** Coefficients for n checkpoints, oldest first. */
  coefficients(n: number, spec: MethodSpec): number[];
}

const ALPHA = {
  kind: "number",
  key: "alpha",
  flag: "alpha",
  placeholder: "A",
  help: "EMA smoothing factor",
  default: 0.2,
  range: EMA_ALPHA_RANGE,
  describe: (v: number) => ` (alpha ${v})`,
} as const satisfies NumberParam;

const DECAY = {
  kind: "choice",
  key: "decay",
  flag: "decay",
  placeholder: "D",
  help: "WSM: the LR decay the merge imitates",
  default: "1-sqrt",
  choices: DECAY_SHAPES,
  describe: (v: string) => ` (${v} decay)`,
} as const satisfies ChoiceParam;

const WEIGHTS = {
  kind: "numbers",
  key: "weights",
  flag: "weights",
  placeholder: "W1,W2,...",
  help: "custom weights, oldest checkpoint first (implies --method custom)",
} as const satisfies NumbersParam;

const NORMALIZE = {
  kind: "switch-off",
  key: "normalize",
  flag: "no-normalize",
  help: "use --weights as given instead of scaling them to sum 1",
  default: true,
} as const satisfies SwitchOffParam;

export const MERGE_METHODS = [
  {
    name: "sma",
    description: "simple moving average: every checkpoint weighs the same (paper Eq. 3)",
    params: [],
    coefficients: (n: number) => smaCoefficients(n),
  },
  {
    name: "wma",
    description: "weighted moving average: weight i for the i-th oldest, newer counts more (Eq. 5)",
    params: [],
    coefficients: (n: number) => wmaCoefficients(n),
  },
  {
    name: "ema",
    description: "exponential moving average by the paper's recursion (Eq. 4)",
    params: [ALPHA],
    coefficients: (n: number, s: MethodSpec) => emaCoefficients(n, s.alpha ?? ALPHA.default),
  },
  {
    name: "wsm",
    description: "the weights that imitate decaying the learning rate over the window (WSM)",
    params: [DECAY],
    coefficients: (n: number, s: MethodSpec) => wsmCoefficients(n, s.decay ?? DECAY.default),
  },
  {
    name: "custom",
    description: "your own weights, one per checkpoint",
    params: [WEIGHTS, NORMALIZE],
    coefficients(n: number, s: MethodSpec) {
      const w = s.weights;
      if (w === undefined) throw new PmaError("WEIGHTS_INVALID", "method custom needs weights");
      if (w.length !== n) {
        throw new PmaError(
          "WEIGHTS_INVALID",
          `got ${w.length} weights for ${n} checkpoints; give one weight per checkpoint, oldest first`,
        );
      }
      return customCoefficients(w, s.normalize ?? NORMALIZE.default);
    },
  },
] as const satisfies readonly MethodEntry[];

export type MergeMethod = (typeof MERGE_METHODS)[number]["name"];

/** The parameters' defaults, for code that builds specs itself: PARAM_DEFAULTS.alpha is EMA's. */
export const PARAM_DEFAULTS = {
  alpha: ALPHA.default,
  decay: DECAY.default,
  normalize: NORMALIZE.default,
} as const;

/** What a merge does when no method is given. */
export const DEFAULT_METHOD: Readonly<MethodSpec> = Object.freeze({ method: "sma" });

export function methodEntry(name: string): MethodEntry {
  const entry: MethodEntry | undefined = MERGE_METHODS.find((m) => m.name === name);
  if (entry === undefined)
    throw new PmaError(
      "WEIGHTS_INVALID",
      `unknown merge method "${name}" (known: ${MERGE_METHODS.map((m) => m.name).join(", ")})`,
    );
  return entry;
}

export function coefficientsFor(spec: MethodSpec, n: number): number[] {
  return methodEntry(spec.method).coefficients(n, spec);
}

type TableParam = (typeof MERGE_METHODS)[number]["params"][number];
type RecordedParam = Extract<TableParam, { kind: "number" | "choice" }>;

/** The method parameters pma_merge.json records beside the method name. */
export type RecordedParams = {
  [P in RecordedParam as P["key"]]?: P extends { kind: "number" } ? number : string;
};

/** The parameters to record for `spec`, defaults filled in: { alpha: 0.2 } for a plain EMA. */
export function recordedParams(spec: MethodSpec): RecordedParams {
  const out: Record<string, number | string> = {};
  for (const p of methodEntry(spec.method).params) {
    if (p.kind === "number" || p.kind === "choice")
      out[p.key] = (spec[p.key] as number | string | undefined) ?? p.default;
  }
  return out as RecordedParams;
}

/** The recorded parameters in a merge's one-line summary: " (alpha 0.2)". */
export function describeParams(method: string, record: RecordedParams): string {
  const entry = MERGE_METHODS.find((m) => m.name === method) as MethodEntry | undefined;
  if (entry === undefined) return "";
  const values = record as Record<string, unknown>;
  return entry.params
    .map((p) => {
      const v = values[p.key];
      if (p.kind === "number" && typeof v === "number") return p.describe(v);
      if (p.kind === "choice" && typeof v === "string") return p.describe(v);
      return "";
    })
    .join("");
}
