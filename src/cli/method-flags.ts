import { PmaError } from "../common/errors.js";
import type { DecayShape, MethodSpec } from "../merge/weights.js";

/** The flags that choose merge coefficients, shared by `pma merge` and `pma plan`. */
export const METHOD_OPTIONS = {
  method: { type: "string" },
  alpha: { type: "string" },
  decay: { type: "string" },
  weights: { type: "string" },
  "no-normalize": { type: "boolean" },
} as const;

export const METHOD_USAGE = `  --method M            sma (default) | wma | ema | wsm
  --alpha A             EMA smoothing factor, default 0.2
  --decay D             WSM: the LR decay the merge imitates: 1-sqrt (default) | linear | cosine
  --weights W1,W2,...   custom weights, oldest checkpoint first (implies --method custom)
  --no-normalize        use --weights as given instead of scaling them to sum 1`;

const DECAYS: DecayShape[] = ["1-sqrt", "linear", "cosine"];

export function methodFromFlags(values: { method?: string; alpha?: string; decay?: string; weights?: string; "no-normalize"?: boolean }): MethodSpec {
  if (values.weights !== undefined) {
    if (values.method !== undefined && values.method !== "custom") {
      throw new PmaError("USAGE", `--weights gives custom weights; it cannot be combined with --method ${values.method}`);
    }
    const weights = values.weights.split(",").map((w) => {
      const x = Number(w.trim());
      if (w.trim() === "" || !Number.isFinite(x)) throw new PmaError("USAGE", `--weights: '${w}' is not a number`);
      return x;
    });
    return { method: "custom", weights, normalize: !(values["no-normalize"] ?? false) };
  }
  const m = (values.method ?? "sma").toLowerCase();
  if (m === "sma" || m === "wma") return { method: m };
  if (m === "ema") {
    const alpha = values.alpha === undefined ? 0.2 : Number(values.alpha);
    if (!(alpha > 0 && alpha <= 1)) throw new PmaError("USAGE", `--alpha must be in (0, 1] (got '${values.alpha}')`);
    return { method: "ema", alpha };
  }
  if (m === "wsm") {
    const decay = (values.decay ?? "1-sqrt") as DecayShape;
    if (!DECAYS.includes(decay)) throw new PmaError("USAGE", `--decay must be one of ${DECAYS.join(", ")} (got '${values.decay}')`);
    return { method: "wsm", decay };
  }
  if (m === "custom") throw new PmaError("USAGE", "--method custom needs --weights W1,W2,...");
  throw new PmaError("USAGE", `--method must be sma, wma, ema or wsm (got '${values.method}')`);
}

/** The flags that reproduce `spec` on a command line. */
export function methodToFlags(spec: MethodSpec): string[] {
  switch (spec.method) {
    case "sma":
    case "wma":
      return ["--method", spec.method];
    case "ema":
      return ["--method", "ema", "--alpha", String(spec.alpha ?? 0.2)];
    case "wsm":
      return ["--method", "wsm", "--decay", spec.decay ?? "1-sqrt"];
    case "custom":
      return ["--weights", (spec.weights ?? []).join(","), ...(spec.normalize === false ? ["--no-normalize"] : [])];
  }
}
