/**
 * From task items to score requests, and from their log-likelihoods to task scores.
 * Kept apart from the model so the rules (what is compared with what, how ties and
 * chance count) can be read and tested on their own.
 */
import type { ScoreRequest } from "./logprob.js";
import { TASK_NAMES, type TaskItems, type TaskName } from "./task-items.js";

export interface TaskScore {
  /** Fraction of items where the model prefers the right answer (ties share credit). */
  accuracy: number;
  /** Items scored. */
  n: number;
  /** Expected accuracy of a model that guesses: 1/choices for next-word, 0.5 for pairs. */
  chance: number;
  /**
   * Mean log-likelihood margin in nats: answer minus best distractor (next-word), or
   * log p(good) - log p(bad) minus the unigram term (pairs). Less noisy than accuracy
   * on a few hundred items, and positive when the model prefers the right answers.
   */
  margin: number;
}

export type TaskScores = Record<TaskName, TaskScore>;

export interface TaskRequests {
  requests: ScoreRequest[];
  /** Request index of each item's candidates: [answer, distractors...] or [good, bad]. */
  index: Record<TaskName, number[][]>;
}

/** Every sequence the tasks need scored (duplicates are fine: the row plan merges them). */
export function taskRequests(items: TaskItems): TaskRequests {
  const requests: ScoreRequest[] = [];
  const add = (ids: number[], from: number): number => requests.push({ ids, from }) - 1;
  const index: Record<TaskName, number[][]> = { lambada: [], blimp_swap: [], blimp_drop: [] };
  for (const it of items.lambada) {
    index.lambada.push(it.choiceIds.map((c) => add([...it.contextIds, ...c], it.contextIds.length)));
  }
  for (const t of ["blimp_swap", "blimp_drop"] as const) {
    // Position 0 is the document separator; everything after it is scored.
    for (const it of items[t]) index[t].push([add(it.goodIds, 1), add(it.badIds, 1)]);
  }
  return { requests, index };
}

/** Scores of every task from the log-likelihood of each request. */
export function taskScores(items: TaskItems, req: TaskRequests, logprob: ArrayLike<number>): TaskScores {
  const out = {} as TaskScores;
  for (const t of TASK_NAMES) {
    let credit = 0;
    let chance = 0;
    let margin = 0;
    const groups = req.index[t];
    groups.forEach((g, k) => {
      let m: number;
      let c: number;
      if (t === "lambada") {
        const answer = logprob[g[0]!]!;
        let best = -Infinity;
        let ties = 0;
        for (let j = 1; j < g.length; j++) {
          const s = logprob[g[j]!]!;
          if (s > best) [best, ties] = [s, 1];
          else if (s === best) ties++;
        }
        m = answer - best;
        c = m > 0 ? 1 : m === 0 ? 1 / (ties + 1) : 0;
        chance += 1 / g.length;
      } else {
        m = logprob[g[0]!]! - logprob[g[1]!]! - items[t][k]!.unigramLogProb;
        c = m > 0 ? 1 : m === 0 ? 0.5 : 0;
        chance += 0.5;
      }
      credit += c;
      margin += m;
    });
    const n = groups.length;
    out[t] = {
      accuracy: n > 0 ? credit / n : NaN,
      n,
      chance: n > 0 ? chance / n : NaN,
      margin: n > 0 ? margin / n : NaN,
    };
  }
  return out;
}

/** Unweighted mean over the tasks that have items, of accuracy and of chance. */
export function averageScore(tasks: TaskScores): { average: number; chance: number } {
  const used = TASK_NAMES.filter((t) => tasks[t].n > 0);
  if (used.length === 0) return { average: NaN, chance: NaN };
  const mean = (f: (s: TaskScore) => number): number =>
    used.reduce((a, t) => a + f(tasks[t]), 0) / used.length;
  return { average: mean((s) => s.accuracy), chance: mean((s) => s.chance) };
}
