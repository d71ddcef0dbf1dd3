/**
 * Question 7 (section 4.5, Fig. 7 right): recovering from a loss spike with PMA-init.
 *
 * Two arms, one experiment (`pma lab spike`):
 *   - spontaneous (spike-spontaneous.ts): runs at a constant LR high enough that the
 *     loss spikes by itself, over seeds, with the logit monitors that say which
 *     instability fired; PMA-init against resuming from the last checkpoint;
 *   - induced (spike-induced.ts): the control, a tenfold LR raise on the MoE run, where
 *     the spike's time and cause are known.
 */
import type { LabContext } from "./context.js";
import type { ExperimentResult, Figure, Finding, Table } from "./result.js";
import { inducedSpike } from "./spike-induced.js";
import { spontaneousSpike } from "./spike-spontaneous.js";

/** What one arm contributes to the experiment's result. */
export interface SpikeArm {
  setup: string;
  findings: Finding[];
  figures: Figure[];
  tables: Table[];
}

export async function spike(ctx: LabContext): Promise<Omit<ExperimentResult, "seconds">> {
  const arms = [await spontaneousSpike(ctx), await inducedSpike(ctx)];
  return {
    id: "spike",
    title: "Loss-spike recovery with PMA-init",
    paper:
      "Section 4.5, Fig. 7 right: an MoE at too high an LR spikes irrecoverably; resuming from PMA-init of the 3 checkpoints before the spike recovers.",
    setup: arms.map((a) => a.setup).join(" "),
    findings: arms.flatMap((a) => a.findings),
    figures: arms.flatMap((a) => a.figures),
    tables: arms.flatMap((a) => a.tables),
  };
}
