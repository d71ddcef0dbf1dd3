import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { StagedDir, writeFileAtomic } from "../common/atomic-dir.js";
import { exists } from "../common/exists.js";
import { fsError, PmaError } from "../common/errors.js";
import { readFullySync } from "../common/positional-io.js";
import { planShards, writeShardIndex } from "../formats/safetensors-writer.js";
import { isRemoteUri, resolveRemote } from "../sources/location.js";
import { S3Staging } from "../sources/s3-output.js";
import { copyCompanions, copyRemoteCompanions } from "./companions.js";
import { MERGE_RECORD_FILE, type MergeRecord, type PartSummary } from "./merger.js";
import {
  PART_MARKER,
  parseMarker,
  parsePartsPlan,
  partMarkerName,
  partsDataDir,
  partsDir,
  partsPlanPath,
  readMarker,
  readPartsPlan,
  type PartMarker,
  type PartsPlan,
} from "./parts-layout.js";
import { getStagedText, listStaged, S3_PARTS_STAGING_ID } from "./parts-s3.js";

export interface FinalizeOptions {
  /** The --out every part was given. */
  out: string;
  /** Replace an existing output. */
  force?: boolean;
  onNote?: (message: string) => void;
}

/**
 * Assembles a partitioned merge: checks that every part of the plan finished, for the
 * same plan, and that the shard files have the planned size and headers; then writes
 * what only the whole merge has (the shard index, config and tokenizer files, the
 * merge record) and publishes the output with one rename. Refuses, listing what is
 * missing or inconsistent, and touches nothing, when any part is not right.
 */
export async function finalizeMerge(opts: FinalizeOptions): Promise<MergeRecord> {
  const finalizing = Date.now();
  if (opts.out.startsWith("s3://")) return finalizeS3(opts, finalizing);
  const out = resolve(opts.out);
  const dir = partsDir(out);
  if (!(await exists(dir))) {
    const done = await finalizedRecord(out);
    if (done !== null) {
      opts.onNote?.(`${out} is already finalized`);
      return done;
    }
    throw new PmaError(
      "PARTS_INCOMPLETE",
      `no parts of a merge into ${out} were found (${dir} does not exist); run \`pma merge CKPT... --out ${opts.out} --part I/N\` for I = 0..N-1 first`,
      { file: dir },
    );
  }
  const data = partsDataDir(out);
  if (!(await exists(data))) {
    // A finalize that published the output and was stopped before removing the plan.
    const done = await finalizedRecord(out);
    if (done !== null) {
      await fs.promises.rm(dir, { recursive: true, force: true });
      opts.onNote?.(`${out} is already finalized`);
      return done;
    }
  }
  const staged = await StagedDir.adopt(out, data, opts.force ?? false);
  try {
    const plan = await readPartsPlan(partsPlanPath(dir));
    const markers = await checkParts(
      dir,
      plan,
      (name) => readMarker(join(dir, name)),
      await fs.promises.readdir(dir),
    );
    await checkShards(data, plan);
    await writeWholeMergeFiles(data, plan);
    const record = finalRecord(plan, markers, finalizing);
    await writeFileAtomic(join(data, MERGE_RECORD_FILE), JSON.stringify(record, null, 2) + "\n");
    await staged.publish();
    // The output is in place; what is left of the meeting place is the plan and markers.
    await fs.promises.rm(dir, { recursive: true, force: true });
    return record;
  } catch (e) {
    await staged.discard();
    throw e;
  }
}

/**
 * An S3 output: the plan and markers are in the staging prefix, the shards are staged
 * multipart uploads. Publishing completes them and writes the index, the companion
 * files and the record last; until then nothing is visible under the output prefix.
 */
async function finalizeS3(opts: FinalizeOptions, finalizing: number): Promise<MergeRecord> {
  const staging = await S3Staging.create(opts.out, { force: opts.force ?? false, id: S3_PARTS_STAGING_ID });
  const where = `s3://${staging.out.bucket}/${staging.stagingPrefix}`;
  const planText = await getStagedText(staging, "plan.json");
  if (planText === null) {
    throw new PmaError(
      "PARTS_INCOMPLETE",
      `no parts of a merge into ${opts.out} were found (no ${where}plan.json); run \`pma merge CKPT... --out ${opts.out} --part I/N\` for I = 0..N-1 first`,
      { file: where },
    );
  }
  const plan = parsePartsPlan(planText, `${where}plan.json`);
  const read = async (name: string) => {
    const text = await getStagedText(staging, name);
    return text === null ? null : parseMarker(text, `${where}${name}`);
  };
  const markers = await checkParts(where, plan, read, await listStaged(staging));
  const spool = await fs.promises.mkdtemp(join(tmpdir(), "pma-finalize-"));
  try {
    await writeWholeMergeFiles(spool, plan);
    const record = finalRecord(plan, markers, finalizing);
    const last: [string, Uint8Array][] = [];
    const index = planShards(plan.specs, plan.shard_size, plan.file_base_name).indexFile;
    // The index first, then config and tokenizer files, the record last.
    const names = (await fs.promises.readdir(spool)).filter((n) => n !== index).sort();
    for (const name of [...(index !== null ? [index] : []), ...names])
      last.push([name, await fs.promises.readFile(join(spool, name))]);
    last.push([MERGE_RECORD_FILE, Buffer.from(JSON.stringify(record, null, 2) + "\n")]);
    await staging.publish(
      plan.recipe.files.map((f) => f.name),
      last,
    );
    return record;
  } finally {
    await fs.promises.rm(spool, { recursive: true, force: true });
  }
}

/** Every part's marker, in order; refuses with the list of missing and inconsistent parts. */
async function checkParts(
  dir: string,
  plan: PartsPlan,
  read: (name: string) => Promise<PartMarker | null>,
  present: string[],
): Promise<PartMarker[]> {
  const count = plan.recipe.count;
  const missing: number[] = [];
  const inconsistent: string[] = [];
  const markers: PartMarker[] = [];
  for (let i = 0; i < count; i++) {
    const name = partMarkerName(i, count);
    let m: PartMarker | null;
    try {
      m = await read(name);
    } catch (e) {
      inconsistent.push(e instanceof Error ? e.message : String(e));
      continue;
    }
    if (m === null) missing.push(i);
    else if (m.digest !== plan.digest || m.index !== i || m.count !== count) {
      inconsistent.push(
        `${name}: written for a different merge (other checkpoints, recipe, part count or pma version) on ${m.host}; rerun part ${i}/${count}`,
      );
    } else markers.push(m);
  }
  for (const name of present) {
    const match = PART_MARKER.exec(name);
    if (match !== null && Number(match[2]) !== count) {
      inconsistent.push(
        `${name}: from a split into ${Number(match[2])} parts, but this merge is split into ${count}; remove it`,
      );
    }
  }
  if (missing.length === 0 && inconsistent.length === 0) return markers;
  const lines = [
    `cannot finalize ${dir}: ${missing.length + inconsistent.length} of ${count} part(s) are not done right.`,
  ];
  if (missing.length > 0) {
    lines.push(
      `  missing (not finished, or not run): ${missing.map((i) => `${i}/${count}`).join(", ")}; run them with --part I/${count} (a Slurm array: sbatch --array=${missing.join(",")})`,
    );
  }
  for (const s of inconsistent) lines.push(`  inconsistent: ${s}`);
  throw new PmaError(
    missing.length > 0 && inconsistent.length === 0 ? "PARTS_INCOMPLETE" : "PARTS_MISMATCH",
    lines.join("\n"),
    { file: dir },
  );
}

/** Each shard has its planned size and the planned header (cheap: no tensor bytes are read). */
async function checkShards(data: string, plan: PartsPlan): Promise<void> {
  for (const f of plan.recipe.files) {
    const path = join(data, f.name);
    let fd: number;
    try {
      fd = fs.openSync(path, "r");
    } catch (e) {
      throw new PmaError(
        "PARTS_INCOMPLETE",
        `${path}: ${(e as Error).message}; the parts' output file is gone: run every part again`,
        { file: path, cause: e },
      );
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size !== f.bytes)
        throw new PmaError(
          "PARTS_MISMATCH",
          `${path}: ${size} bytes, but the plan says ${f.bytes}; run every part again`,
          { file: path },
        );
      const prefix = Buffer.alloc(8);
      readFullySync(fd, path, prefix, 0);
      const headerLength = 8 + Number(prefix.readBigUInt64LE(0));
      const header = Buffer.alloc(Math.min(headerLength, f.bytes));
      readFullySync(fd, path, header, 0);
      if (createHash("sha256").update(header).digest("hex") !== f.header_sha256) {
        throw new PmaError(
          "PARTS_MISMATCH",
          `${path}: its header is not the planned one; run every part again`,
          { file: path },
        );
      }
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** The shard index and companion files; a rerun after an interrupted finalize rewrites them. */
async function writeWholeMergeFiles(data: string, plan: PartsPlan): Promise<void> {
  const shards = planShards(plan.specs, plan.shard_size, plan.file_base_name);
  if (shards.indexFile !== null) {
    const indexPath = join(data, shards.indexFile);
    await fs.promises.rm(indexPath, { force: true });
    await writeShardIndex(indexPath, shards);
  }
  const from = plan.companions.from;
  const dtype = plan.companions.torch_dtype ?? undefined;
  if (from !== null && isRemoteUri(from)) await copyRemoteCompanions(await resolveRemote(from), data, dtype);
  else if (from !== null) await copyCompanions(from, data, dtype);
}

/**
 * The record of the whole merge: what part 0 recorded about the recipe (all parts agree:
 * same digest), the sums of what each part read and wrote, and the wall time from the
 * first part's start to the end of finalize.
 */
function finalRecord(plan: PartsPlan, markers: PartMarker[], finalizing: number): MergeRecord {
  const first = markers[0]!.record;
  const starts = markers.map((m) => Date.parse(m.record.started_at));
  const started = Math.min(...starts, finalizing);
  const shards = planShards(plan.specs, plan.shard_size, plan.file_base_name);
  const parts: PartSummary[] = markers.map((m) => ({
    index: m.index,
    host: m.host,
    started_at: m.record.started_at,
    seconds: m.record.seconds,
    bytes_read: m.record.bytes_read,
  }));
  const { part: _part, ...rest } = first;
  return {
    ...rest,
    bytes_read: markers.reduce((s, m) => s + m.record.bytes_read, 0),
    bytes_written: markers.reduce((s, m) => s + m.record.bytes_written, 0),
    files: [...shards.shards.map((s) => s.file), ...(shards.indexFile !== null ? [shards.indexFile] : [])],
    companions_from: plan.companions.from,
    nonfinite: markers.flatMap((m) => m.record.nonfinite),
    started_at: new Date(started).toISOString(),
    seconds: (Date.now() - started) / 1000,
    parts,
  };
}

/** The record of an output this finalize (or an earlier one) already published. */
async function finalizedRecord(out: string): Promise<MergeRecord | null> {
  try {
    const record = JSON.parse(
      await fs.promises.readFile(join(out, MERGE_RECORD_FILE), "utf8"),
    ) as MergeRecord;
    return Array.isArray(record.parts) ? record : null;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" || e instanceof SyntaxError) return null;
    throw fsError(join(out, MERGE_RECORD_FILE), "read", e);
  }
}
