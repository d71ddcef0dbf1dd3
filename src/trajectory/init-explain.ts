import { dirname, relative } from "node:path";
import { formatTokens } from "../common/units.js";
import { describeEvent } from "./init-select.js";
import type { InitRecord } from "./init.js";

function fmtLoss(x: number | null): string {
  if (x === null) return "not logged";
  return Number.isFinite(x) ? x.toFixed(4) : String(x);
}

/**
 * What a PMA-init did and why, for a person deciding whether to resume from it: the
 * spike (or the step given), the checkpoints and their coefficients, which trainer
 * state came along, and how to resume.
 */
export function explainInit(r: InitRecord): string {
  const rel = (p: string) => {
    const q = relative(r.run, p);
    return q !== "" && !q.startsWith("..") ? q : p;
  };
  const lines: string[] = [`PMA-init of ${r.run}`];
  if (r.reason.kind === "spike") {
    const e = r.reason.event;
    lines.push(`  why: loss ${describeEvent(e)}`);
    if (e.gradNormSpike) lines.push(`       grad norm spiked with it (peak ${fmtLoss(e.gradNormPeak)})`);
    lines.push(
      `  last healthy loss logged at step ${e.lastHealthyStep}; checkpoints at or before step ${r.reason.limitStep} qualify`,
    );
  } else {
    lines.push(
      `  why: restart requested before step ${r.reason.before} (loss there: ${fmtLoss(r.reason.lossAtStep)}); checkpoints up to step ${r.reason.limitStep} qualify`,
    );
  }
  lines.push(`  merged ${r.checkpoints.length} checkpoint(s) with ${r.method.toUpperCase()} (oldest first):`);
  for (const c of r.checkpoints) {
    lines.push(
      `    ${c.coefficient.toFixed(6)}  ${rel(c.path)}  (step ${c.step}${c.tokens !== null ? `, ${formatTokens(c.tokens)} tokens` : ""})`,
    );
  }
  const adapted = r.adapted.length > 0 ? `; written for the restart: ${r.adapted.join(", ")}` : "";
  lines.push(
    `  trainer state from ${rel(r.state_from)} (step ${r.step}): ${r.copied.length > 0 ? r.copied.join(", ") : "nothing to copy"}${adapted}`,
  );
  if (r.optimizer === "latest") {
    lines.push(
      `  optimizer: latest (the moments of step ${r.step}, accumulated on that checkpoint's own weights: an approximation for the merge)`,
    );
  } else if (r.layout === "pma") {
    lines.push(
      "  optimizer: reset (AdamW starts fresh: zero moments, step 0; the step, data position and LR schedule continue)",
    );
  } else {
    lines.push(
      "  optimizer: reset (no optimizer or scheduler state: the optimizer starts fresh and the LR schedule restarts from its first step, warmup included)",
    );
  }
  for (const o of r.omitted) lines.push(`  left out ${o.name}: ${o.reason}`);
  for (const n of r.notes) lines.push(`  note: ${n}`);
  lines.push(`wrote ${r.checkpoint}`);
  if (r.log_prefix !== null) lines.push(`wrote ${r.log_prefix} (the run's log up to step ${r.step})`);
  if (r.layout === "pma") {
    lines.push(`resume it: pma train --resume ${r.checkpoint}   (continues in ${dirname(r.checkpoint)})`);
  } else {
    lines.push(`resume it: trainer.train(resume_from_checkpoint="${r.checkpoint}")`);
  }
  return lines.join("\n") + "\n";
}
