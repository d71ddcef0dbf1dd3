import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PMA_STATE_FILE, readPmaState } from "../../src/train/checkpoint.js";
import { parseTrainConfig, parseTrainConfigYaml, trainConfigToYaml } from "../../src/train/config.js";
import { WatchJournal } from "../../src/trajectory/watch-journal.js";
import { isPmaError } from "../../src/common/errors.js";
import { utf8, type FuzzTarget } from "../target.js";

/**
 * Files pma writes and later reads back, which a crash, a copy between machines or a
 * hand edit can leave in any state: a checkpoint's pma_state.json (read on resume, its
 * training config validated field by field), a training config in YAML, and pma
 * watch's journal. Every input is read by all three: a crash in any is the finding;
 * otherwise it counts as read when one of them accepts it.
 */
export const stateFilesTarget: FuzzTarget = {
  name: "state-files",
  description:
    "pma_state.json (train resume), a train config (YAML) and watch.jsonl (watch restart), from the same bytes",
  dictionary: [
    "NaN",
    "Infinity",
    "-Infinity",
    '"format"',
    '"pma-train-state"',
    '"version"',
    '"config"',
    '"type"',
    '"merge"',
    '"spike"',
    '"step"',
    "null",
    "model:",
    "data:",
    "schedule:",
    "{kind: wsd}",
  ],
  async seeds() {
    const config = parseTrainConfig({}, "seed");
    const state = {
      format: "pma-train-state",
      version: 1,
      global_step: 12,
      tokens: 3072,
      config,
      lineage: [],
      pma_version: "0",
    };
    const journal = [
      {
        type: "merge",
        checkpoint: "checkpoint-30",
        step: 30,
        tokens: 3000,
        inputs: [{ name: "checkpoint-30", step: 30, tokens: 3000, coefficient: 1 }],
        raw_loss: null,
        merged_loss: null,
        time: "t",
      },
      {
        type: "spike",
        start_step: 40,
        kind: "divergence",
        ongoing: true,
        peak_step: 41,
        peak_loss: "Infinity",
        init_checkpoint: null,
        inputs: [],
        action: "none",
        time: "t",
      },
    ];
    // pma_state.json after a hand edit or a Python tool: NaN and Infinity literals.
    const python = JSON.stringify({ ...state, best_loss: 0 }, null, 2).replace(
      '"best_loss": 0',
      '"best_loss": NaN, "worst": -Infinity, "scale": Infinity',
    );
    return [
      JSON.stringify(state, null, 2),
      trainConfigToYaml(config),
      journal.map((j) => JSON.stringify(j)).join("\n") + "\n",
      python,
    ].map(utf8);
  },
  async setup(work) {
    const dir = join(work, "state");
    await mkdir(dir, { recursive: true });
    const journal = join(dir, "watch.jsonl");
    const text = new TextDecoder();
    return async (data) => {
      const readers = [
        async () => {
          await writeFile(join(dir, PMA_STATE_FILE), data);
          await readPmaState(dir);
        },
        async () => parseTrainConfigYaml(text.decode(data), "run.yaml"),
        async () => {
          await writeFile(journal, data);
          await WatchJournal.open(journal);
        },
      ];
      const refusals: unknown[] = [];
      for (const read of readers) {
        try {
          await read();
        } catch (e) {
          if (!isPmaError(e)) throw e;
          refusals.push(e);
        }
      }
      if (refusals.length === readers.length) throw refusals[0];
    };
  },
};
