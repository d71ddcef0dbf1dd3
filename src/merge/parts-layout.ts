import * as fs from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fsError, PmaError } from "../common/errors.js";
import type { TensorSpec } from "../formats/safetensors-writer.js";
import type { MergeRecord } from "./merger.js";

/**
 * Where the parts of a partitioned merge into `out` meet, and what they write there.
 * A hidden sibling of the output, so it is on the same filesystem and publishing the
 * assembled output is one rename.
 */
export function partsDir(out: string): string {
  const abs = resolve(out);
  return join(dirname(abs), `.${basename(abs)}.pma-parts`);
}

/** The output's files as the parts write them; becomes the output at --finalize. */
export function partsDataDir(out: string): string {
  return join(partsDir(out), "out");
}

export function partsPlanPath(dir: string): string {
  return join(dir, "plan.json");
}

export function partMarkerName(index: number, count: number): string {
  const pad = (k: number) => String(k).padStart(5, "0");
  return `part-${pad(index)}-of-${pad(count)}.json`;
}

export const PART_MARKER = /^part-(\d+)-of-(\d+)\.json$/;
export const PLAN_VERSION = 1;
export const MARKER_VERSION = 1;

/**
 * Everything that decides the output's bytes, and nothing that does not (paths may
 * differ between machines that mount the same files; thread counts do not matter).
 * Its sha256 is the digest every part and the finalizer compare.
 */
export interface PartsRecipe {
  count: number;
  method: string;
  coefficients: number[];
  dtype: string | null;
  accumulate: string;
  allow_nonfinite: boolean;
  /** Per input, oldest first: its size and the sha256 of each file's header. */
  inputs: { size_bytes: number; header_sha256: string[] }[];
  /** Each output shard: name, full size, sha256 of its header (names, shapes, dtypes, metadata). */
  files: { name: string; bytes: number; header_sha256: string }[];
}

export interface PartsPlan {
  pma_parts: number;
  digest: string;
  recipe: PartsRecipe;
  shard_size: number;
  file_base_name: string;
  index_file: string | null;
  specs: TensorSpec[];
  /** Where the finalizer copies config and tokenizer files from, and the dtype to write into config.json. */
  companions: { from: string | null; torch_dtype: string | null };
  /** Absolute input paths as the first part saw them, for the record. */
  inputs: string[];
}

export interface PartMarker {
  pma_part: number;
  digest: string;
  index: number;
  count: number;
  host: string;
  finished_at: string;
  /** The part's own merge record: its bytes and seconds. */
  record: MergeRecord;
}

export async function readPartsPlan(path: string): Promise<PartsPlan> {
  let text: string;
  try {
    text = await fs.promises.readFile(path, "utf8");
  } catch (e) {
    throw fsError(path, "read", e);
  }
  return parsePartsPlan(text, path);
}

/** A plan's text, checked; `path` (a file or an S3 URI) names it in errors. */
export function parsePartsPlan(text: string, path: string): PartsPlan {
  const bad = (why: string) =>
    new PmaError(
      "PARTS_MISMATCH",
      `${path}: ${why}; it was not written by this pma version's --part. Remove ${dirname(path)} and run every part again.`,
      { file: path },
    );
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message})`);
  }
  if (!isObject(v) || v["pma_parts"] !== PLAN_VERSION) throw bad("not a parts plan of a known version");
  const recipe = v["recipe"];
  if (
    typeof v["digest"] !== "string" ||
    !isObject(recipe) ||
    typeof recipe["count"] !== "number" ||
    !Array.isArray(recipe["files"]) ||
    !Array.isArray(recipe["inputs"]) ||
    !Array.isArray(v["specs"]) ||
    typeof v["shard_size"] !== "number" ||
    typeof v["file_base_name"] !== "string" ||
    !isObject(v["companions"]) ||
    !Array.isArray(v["inputs"])
  ) {
    throw bad("fields are missing or have the wrong type");
  }
  return v as unknown as PartsPlan;
}

/** A part's marker, null when it is absent; an unreadable one is an error naming it. */
export async function readMarker(path: string): Promise<PartMarker | null> {
  let text: string;
  try {
    text = await fs.promises.readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw fsError(path, "read", e);
  }
  return parseMarker(text, path);
}

/** A marker's text, checked; `path` (a file or an S3 URI) names it in errors. */
export function parseMarker(text: string, path: string): PartMarker {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new PmaError("PARTS_MISMATCH", `${path}: not JSON; rerun that part`, { file: path });
  }
  if (
    !isObject(v) ||
    v["pma_part"] !== MARKER_VERSION ||
    typeof v["digest"] !== "string" ||
    typeof v["index"] !== "number" ||
    typeof v["count"] !== "number" ||
    !isObject(v["record"]) ||
    typeof v["record"]["bytes_read"] !== "number" ||
    typeof v["record"]["started_at"] !== "string"
  ) {
    throw new PmaError("PARTS_MISMATCH", `${path}: not a part marker of this pma version; rerun that part`, {
      file: path,
    });
  }
  return v as unknown as PartMarker;
}

/** What differs between two recipes, in words, for a refusal message. */
export function recipeDifferences(a: PartsRecipe, b: PartsRecipe): string[] {
  const out: string[] = [];
  if (a.count !== b.count) out.push(`split into ${a.count} parts there, ${b.count} here`);
  if (a.inputs.length !== b.inputs.length)
    out.push(`${a.inputs.length} checkpoints there, ${b.inputs.length} here`);
  else if (JSON.stringify(a.inputs) !== JSON.stringify(b.inputs))
    out.push("different checkpoints (or another order)");
  if (a.method !== b.method || JSON.stringify(a.coefficients) !== JSON.stringify(b.coefficients)) {
    out.push(
      `method ${a.method} [${a.coefficients.join(", ")}] there, ${b.method} [${b.coefficients.join(", ")}] here`,
    );
  }
  if (a.dtype !== b.dtype) out.push(`--dtype ${a.dtype ?? "as input"} there, ${b.dtype ?? "as input"} here`);
  if (a.accumulate !== b.accumulate) out.push(`--accumulate ${a.accumulate} there, ${b.accumulate} here`);
  if (a.allow_nonfinite !== b.allow_nonfinite)
    out.push(
      `--allow-nonfinite ${a.allow_nonfinite ? "given" : "not given"} there, ${b.allow_nonfinite ? "given" : "not given"} here`,
    );
  if (out.length === 0 && JSON.stringify(a.files) !== JSON.stringify(b.files))
    out.push("different output shards (--shard-size or pma version)");
  if (out.length === 0) out.push("the recipes differ");
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
