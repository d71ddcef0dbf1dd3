/**
 * Progress written into a checkpoint's name, as published runs name their Hub revisions
 * and folders: OLMo's `stage1-step928000-tokens3892B`, Pythia's `step143000`, LLM360's
 * `ckpt_100`. Tokens are given in billions (`tokens3892B`); a step is any `step<N>`.
 */
export interface NameProgress {
  tokens?: number;
  step?: number;
}

export function progressFromName(name: string): NameProgress {
  const out: NameProgress = {};
  const tokens = /(?:^|[^a-z])tokens?[-_]?(\d+(?:\.\d+)?)([BMKT])(?![a-z])/i.exec(name);
  if (tokens !== null) {
    const scale = { K: 1e3, M: 1e6, B: 1e9, T: 1e12 }[tokens[2]!.toUpperCase() as "K" | "M" | "B" | "T"];
    out.tokens = Math.round(Number(tokens[1]) * scale);
  }
  const step = /(?:^|[^a-z])(?:step|iter|checkpoint|ckpt|global_step)[-_]?(\d+)(?!\d)/i.exec(name);
  if (step !== null && Number.isSafeInteger(Number(step[1]))) out.step = Number(step[1]);
  return out;
}
