/**
 * What the lab reports while it works: which experiment is doing what, and the step of
 * each training job. The CLI draws it on a terminal (src/cli/lab-progress.ts); the
 * library default says nothing.
 */
export interface ProgressLine {
  update(text: string): void;
  done(): void;
}

export interface LabProgress {
  /** An experiment's current stage ("scoring 5/14 checkpoints"). */
  stage(experiment: string, text: string): void;
  /** A finished experiment and its wall time. */
  finished(experiment: string, seconds: number, cached: boolean): void;
  /** A line for one job (a training run), removed by done(). */
  line(label: string): ProgressLine;
}

export const SILENT_PROGRESS: LabProgress = {
  stage() {},
  finished() {},
  line: () => ({ update() {}, done() {} }),
};
