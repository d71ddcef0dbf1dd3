/**
 * PMA-init for the spike experiment's arms: the 3 checkpoints before the spike merged
 * by pma init (trajectory/init.ts), cached in DIR/restarts/<hash> by the spiked run and
 * the restart point, so a rerun of the lab reuses the restart checkpoint.
 */
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { INIT_RECORD_FILE, pmaInit, type InitRecord } from "../trajectory/init.js";
import type { TrainingLog } from "../trajectory/logs.js";
import type { RunCheckpoint } from "../trajectory/run.js";
import type { SpikeEvent } from "../trajectory/spikes.js";
import type { LabContext } from "./context.js";
import { hashOf } from "./store.js";

export interface RestartRequest {
  /** The spiked run (its log and, with `checkpoints`, the folder pma init names). */
  spikeDir: string;
  /** Every checkpoint PMA-init may take, any folders (a fork's parent up to the fork included). */
  checkpoints: RunCheckpoint[];
  log: TrainingLog;
  /** The spike to restart before; or, where the detector found none, a step to restart before. */
  at: { event: SpikeEvent } | { before: number };
}

export async function pmaRestart(ctx: LabContext, r: RestartRequest): Promise<InitRecord> {
  const before = "event" in r.at ? r.at.event.onsetStep : r.at.before;
  const out = ctx.store.path("restarts", hashOf({ spike: ctx.store.rel(r.spikeDir), before }));
  if (!ctx.store.fresh && existsSync(out)) {
    for (const name of await readdir(out)) {
      const rec = join(out, name, INIT_RECORD_FILE);
      if (existsSync(rec)) return JSON.parse(await readFile(rec, "utf8")) as InitRecord;
    }
  }
  return pmaInit({
    run: r.spikeDir,
    out,
    scan: {
      dir: r.spikeDir,
      checkpoints: [...r.checkpoints].sort((a, b) => a.step - b.step),
      skipped: [],
    },
    trainingLog: r.log,
    count: 3,
    force: true,
    threads: 1,
    ...r.at,
  });
}
