/**
 * Hands the lab's results to the report module. Until its renderer is wired in here,
 * the results are written as JSON (DIR/lab-report/results.json) so nothing computed is lost.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../common/atomic-dir.js";
import type { LabResult } from "./lab.js";

/** Writes the report for `result` and returns the path of its entry file. */
export async function writeLabReport(result: LabResult): Promise<string> {
  const dir = join(result.dir, "lab-report");
  await mkdir(dir, { recursive: true });
  const file = join(dir, "results.json");
  await writeFileAtomic(file, JSON.stringify(result, null, 1) + "\n");
  return file;
}
