import type { LabProgress, ProgressLine } from "../lab/progress.js";

/**
 * pma lab's progress where stderr is not a terminal (CI logs, `2> file`): plain lines,
 * never redrawn. A training job's start and end and an experiment's end are printed as
 * they happen; what is running (each job's latest step text, each experiment's stage)
 * is printed as one line every `everyMs`, so a 13-minute run shows signs of life
 * without flooding the log with every step.
 */
export function labProgressLog(
  profile: string,
  everyMs = 60_000,
  write: (s: string) => void = (s) => process.stderr.write(s),
): LabProgress & { stop(): void } {
  const t0 = Date.now();
  const stages = new Map<string, string>();
  const jobs = new Map<number, { label: string; text: string }>();
  let nextJob = 0;
  const clock = (): string => {
    const s = Math.floor((Date.now() - t0) / 1000);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  };
  const say = (text: string): void => write(`pma lab (${profile}) ${clock()} ${text}\n`);
  const heartbeat = setInterval(() => {
    const parts = [
      ...[...jobs.values()].map((j) => `${j.label}: ${j.text}`),
      ...[...stages.entries()].map(([e, t]) => `${e}: ${t}`),
    ];
    if (parts.length > 0) say(`running: ${parts.join("; ")}`);
  }, everyMs);
  // The heartbeat alone must not keep the process alive once the lab is done.
  heartbeat.unref();
  return {
    stage(experiment, text) {
      stages.set(experiment, text);
    },
    finished(experiment, seconds, cached) {
      stages.delete(experiment);
      say(`${experiment}: ${cached ? "cached" : `done in ${seconds.toFixed(0)} s`}`);
    },
    line(label): ProgressLine {
      const id = nextJob++;
      jobs.set(id, { label, text: "waiting" });
      return {
        update(text) {
          if (jobs.get(id)?.text === "waiting") say(`train ${label}: started`);
          jobs.set(id, { label, text });
        },
        done() {
          jobs.delete(id);
          say(`train ${label}: done`);
        },
      };
    },
    stop() {
      clearInterval(heartbeat);
    },
  };
}
