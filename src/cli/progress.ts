import cliProgress from "cli-progress";
import { isInteractive } from "./terminal.js";

/**
 * A byte-progress bar with rate and ETA on a terminal; nothing at all otherwise, so
 * logs and `--json` output stay clean.
 */
export interface ByteProgress {
  update(done: number, total: number): void;
  stop(): void;
}

const GIB = 2 ** 30;

export function byteProgress(label: string, enabled = isInteractive()): ByteProgress {
  if (!enabled) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {doneGiB}/{totalGiB} GiB | {rate} GiB/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  const start = Date.now();
  let started = false;
  return {
    update(done, total) {
      const payload = {
        doneGiB: (done / GIB).toFixed(2),
        totalGiB: (total / GIB).toFixed(2),
        rate: (done / GIB / Math.max(1e-3, (Date.now() - start) / 1000)).toFixed(2),
      };
      if (!started) {
        bar.start(total, done, payload);
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(done, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
