import cliProgress from "cli-progress";
import { isInteractive } from "./terminal.js";
import type { TrainEvent } from "../train/loop.js";

/**
 * Training progress: on a terminal a bar with loss, validation loss, tokens/s and ETA;
 * elsewhere (a log file, CI) one line per evaluation, so a long run still shows signs
 * of life without a line per step.
 */
export interface TrainProgress {
  onEvent(e: TrainEvent): void;
  stop(): void;
}

/** Tokens/s over the last few steps: smooth enough to read, quick to follow a change. */
class Rate {
  private readonly window: { tokens: number; seconds: number }[] = [];
  add(tokens: number, seconds: number): void {
    this.window.push({ tokens, seconds });
    if (this.window.length > 20) this.window.shift();
  }
  get value(): number {
    let t = 0;
    let s = 0;
    for (const w of this.window) {
      t += w.tokens;
      s += w.seconds;
    }
    return s > 0 ? t / s : 0;
  }
}

export function trainProgress(enabled = isInteractive()): TrainProgress {
  const rate = new Rate();
  let lastTokens = 0;
  let val = "-";
  if (!enabled) {
    let loss = NaN;
    return {
      onEvent(e) {
        if (e.type === "start") lastTokens = e.tokens;
        if (e.type === "step") {
          rate.add(e.record.tokens - lastTokens, e.record.seconds);
          lastTokens = e.record.tokens;
          loss = e.record.loss;
        }
        if (e.type === "eval") {
          process.stderr.write(
            `step ${e.record.step} (${e.record.tokens} tokens): loss ${loss.toFixed(4)}, val_loss ${e.record.val_loss.toFixed(4)}, ${rate.value.toFixed(0)} tokens/s\n`,
          );
        }
        if (e.type === "note") process.stderr.write(`pma: note: ${e.message}\n`);
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format:
        "train [{bar}] {value}/{total} steps | loss {loss} | val {val} | {rate} tok/s | ETA {eta_formatted}",
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    onEvent(e) {
      switch (e.type) {
        case "start":
          lastTokens = e.tokens;
          bar.start(e.maxSteps, e.step, { loss: "-", val, rate: "-" });
          started = true;
          break;
        case "step":
          rate.add(e.record.tokens - lastTokens, e.record.seconds);
          lastTokens = e.record.tokens;
          bar.update(e.record.step, { loss: e.record.loss.toFixed(4), val, rate: rate.value.toFixed(0) });
          break;
        case "eval":
          val = e.record.val_loss.toFixed(4);
          bar.update({ val });
          break;
        case "note":
          if (started) bar.stop();
          process.stderr.write(`pma: note: ${e.message}\n`);
          break;
        case "checkpoint":
          break;
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
