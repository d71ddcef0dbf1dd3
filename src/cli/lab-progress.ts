import { isInteractive } from "./terminal.js";
import type { LabProgress, ProgressLine } from "../lab/progress.js";
import { labProgressLog } from "./lab-progress-log.js";

/**
 * pma lab's progress on a terminal: one line per running training job and one per
 * experiment still working, redrawn in place a few times a second. Elsewhere (a log
 * file, CI), plain lines from lab-progress-log.ts.
 */
export function labProgress(profile: string, enabled = isInteractive()): LabProgress & { stop(): void } {
  if (!enabled) return labProgressLog(profile);
  const t0 = Date.now();
  const stages = new Map<string, string>();
  const jobs = new Map<number, { label: string; text: string }>();
  let nextJob = 0;
  let drawn = 0;
  let timer: NodeJS.Timeout | null = null;
  const clock = (): string => {
    const s = Math.floor((Date.now() - t0) / 1000);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  };
  const draw = (): void => {
    const width = process.stderr.columns ?? 100;
    const lines = [
      `pma lab (${profile}) ${clock()}`,
      ...[...jobs.values()].map((j) => `  train  ${j.label}: ${j.text}`),
      ...[...stages.entries()].map(([e, t]) => `  ${e}: ${t}`),
    ].map((l) => l.slice(0, width - 1));
    let out = drawn > 0 ? `\x1b[${drawn}F` : "";
    for (const l of lines) out += `\x1b[2K${l}\n`;
    // Lines left over from a taller frame are cleared.
    for (let i = lines.length; i < drawn; i++) out += "\x1b[2K\n";
    if (drawn > lines.length) out += `\x1b[${drawn - lines.length}F`;
    process.stderr.write(out);
    drawn = lines.length;
  };
  const schedule = (): void => {
    timer ??= setTimeout(() => {
      timer = null;
      draw();
    }, 250);
  };
  const clockTimer = setInterval(schedule, 1000);
  return {
    stage(experiment, text) {
      stages.set(experiment, text);
      schedule();
    },
    finished(experiment, seconds, cached) {
      stages.delete(experiment);
      // Finished experiments scroll above the live lines.
      if (drawn > 0) process.stderr.write(`\x1b[${drawn}F\x1b[J`);
      drawn = 0;
      process.stderr.write(`${experiment}: ${cached ? "cached" : `done in ${seconds.toFixed(0)} s`}\n`);
      schedule();
    },
    line(label): ProgressLine {
      const id = nextJob++;
      jobs.set(id, { label, text: "waiting" });
      schedule();
      return {
        update(text) {
          jobs.set(id, { label, text });
          schedule();
        },
        done() {
          jobs.delete(id);
          schedule();
        },
      };
    },
    stop() {
      clearInterval(clockTimer);
      if (timer !== null) clearTimeout(timer);
      if (drawn > 0) process.stderr.write(`\x1b[${drawn}F\x1b[J`);
      drawn = 0;
    },
  };
}
