import { isPmaError } from "../src/common/errors.js";
import { budgetFor, meterViolation, pauseMeter, resetMeter } from "./meter.js";

/**
 * What one input did. "ok": a result; "rejected": a PmaError with a code (the
 * documented way to refuse a bad file); "crash": anything else, including an
 * allocation past the input's budget, an INTERNAL error (pma's own "this cannot
 * happen"), an oracle failure, or a run slower than `slowMs`.
 */
export type Verdict =
  | { kind: "ok" }
  | { kind: "rejected"; code: string }
  | { kind: "crash"; signature: string; message: string; stack: string };

export interface Execution {
  verdict: Verdict;
  ms: number;
  allocated: number;
}

function causes(e: unknown): unknown[] {
  const out: unknown[] = [];
  for (let c: unknown = e; c !== undefined && out.length < 8; c = c instanceof Error ? c.cause : undefined)
    out.push(c);
  return out;
}

/** A stable name for a crash: the error's class and where in pma it was thrown. */
export function signatureOf(e: unknown): string {
  if (!(e instanceof Error)) return `non-Error thrown: ${typeof e}`;
  const frames = (e.stack ?? "")
    .split("\n")
    .filter((l) => l.includes("/dist/src/") || l.includes("/dist/fuzz/"));
  const top =
    frames[0]
      ?.trim()
      .replace(/^at /, "")
      .replace(/\(?file:\/\/.*\/dist\//, "")
      .replace(/:\d+\)?$/, "") ?? "?";
  // Numbers in messages are input-specific; the kind of failure is not.
  return `${e.name}: ${e.message.split("\n")[0]!.replace(/\d+/g, "N").slice(0, 120)} @ ${top}`;
}

export async function execute(
  run: (data: Uint8Array) => Promise<void>,
  data: Uint8Array,
  slowMs: number,
): Promise<Execution> {
  resetMeter(budgetFor(data.length));
  const t0 = performance.now();
  let thrown: unknown = undefined;
  let threw = false;
  try {
    await run(data);
  } catch (e) {
    thrown = e;
    threw = true;
  }
  const ms = performance.now() - t0;
  const allocated = pauseMeter();
  const budgetHit =
    meterViolation() ?? causes(thrown).find((c) => c instanceof Error && c.name === "AllocationBudgetError");
  let verdict: Verdict;
  if (budgetHit !== undefined) verdict = crash(budgetHit);
  else if (!threw) verdict = { kind: "ok" };
  else if (isPmaError(thrown) && thrown.code !== "INTERNAL")
    verdict = { kind: "rejected", code: thrown.code };
  else verdict = crash(thrown);
  if (verdict.kind !== "crash" && ms > slowMs) {
    verdict = {
      kind: "crash",
      signature: `slow: over ${slowMs} ms`,
      message: `took ${ms.toFixed(0)} ms on ${data.length} bytes`,
      stack: "",
    };
  }
  return { verdict, ms, allocated };
}

function crash(e: unknown): Verdict {
  const err = e instanceof Error ? e : new Error(String(e));
  return { kind: "crash", signature: signatureOf(err), message: err.message, stack: err.stack ?? "" };
}
