import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fsyncPath, writeFileAtomic } from "../common/atomic-dir.js";
import { exists } from "../common/exists.js";
import { fsError, PmaError } from "../common/errors.js";
import { encodeHeader, fileMetadata } from "../formats/safetensors-layout.js";
import {
  DEFAULT_SHARD_SIZE,
  planShards,
  SafetensorsWriter,
  type TensorSpec,
} from "../formats/safetensors-writer.js";
import { floatDTypeBytes } from "../tensor/codec.js";
import { isFloatDType, torchDtypeName } from "../tensor/dtype.js";
import { numel } from "../tensor/shape.js";
import { LocalFileSource } from "../sources/local.js";
import { isRemoteUri } from "../sources/location.js";
import { S3Staging } from "../sources/s3-output.js";
import type { MergeRecord } from "./merger.js";
import { getStagedText, putStagedText, S3_PARTS_STAGING_ID } from "./parts-s3.js";
import type { MergeOutput, OutputContext, OutputWriter } from "./outputs.js";
import {
  MARKER_VERSION,
  PLAN_VERSION,
  partMarkerName,
  partsDataDir,
  partsDir,
  partsPlanPath,
  parseMarker,
  parsePartsPlan,
  readMarker,
  readPartsPlan,
  recipeDifferences,
  type PartMarker,
  type PartsPlan,
  type PartsRecipe,
} from "./parts-layout.js";
import { alignedCuts, partitionWork, type ElementRange, type WorkItem } from "./partition.js";
import { outputWriterOptions } from "./shard-metadata.js";

/** Part `index` (0-based) of a merge split into `count` parts. */
export interface PartSpec {
  index: number;
  count: number;
}

/**
 * Cuts inside a tensor fall on multiples of this many output bytes (a page), so parts
 * that share a large tensor write whole pages each. Where two parts meet at a tensor
 * boundary they write different bytes of one page; POSIX filesystems (Lustre, GPFS,
 * BeeGFS, CephFS) keep those apart, and so does NFS, whose writes are byte ranges.
 */
const CUT_ALIGN_BYTES = 4096;

/**
 * One part of a partitioned merge. Every part computes the same plan from the same
 * inputs: the output's shard files (the very files a single-process merge writes) and
 * which byte ranges of them each part fills. The parts meet in a hidden sibling of the
 * output, `.<name>.pma-parts/`: `plan.json` (written by whichever part comes first,
 * checked by every other), `out/` (the shard files, which every part opens, sizes and
 * gives the same header, then fills its ranges of), and one `part-I-of-N.json` per
 * finished part, written atomically after its data is durable. `pma merge --finalize`
 * checks them and publishes `out/` as the output.
 *
 * An S3 output (`s3://bucket/prefix`) cannot take writes at offsets from several
 * processes, so there the unit of work is a whole shard file: each part merges its
 * shards into a local spool, uploads each as a staged multipart upload (invisible until
 * published) under the output's staging prefix `.<name>.pma-staging-parts/`, where the
 * plan and the markers live too; finalize completes the uploads and writes the index,
 * companions and record last. Balance then needs several shards per part (--shard-size).
 */
export class PartOutput implements MergeOutput {
  private writer: SafetensorsWriter | null = null;
  private plan: PartsPlan | null = null;
  private touched = new Set<string>();
  /** S3 outputs only: the local folder the shards are merged into before upload. */
  private spool: string | null = null;

  private constructor(
    private readonly out: string,
    private readonly part: PartSpec,
    private readonly s3: S3Staging | null,
    private readonly signal?: AbortSignal,
  ) {}

  static async create(
    out: string,
    force: boolean,
    part: PartSpec,
    signal?: AbortSignal,
  ): Promise<PartOutput> {
    if (!(
      Number.isSafeInteger(part.count) &&
      part.count >= 1 &&
      Number.isSafeInteger(part.index) &&
      part.index >= 0 &&
      part.index < part.count
    )) {
      throw new PmaError("USAGE", `--part must be I/N with 0 <= I < N (got ${part.index}/${part.count})`);
    }
    if (out.startsWith("s3://")) {
      // Refuses an output prefix that holds objects, unless --force, as a whole merge does.
      return new PartOutput(
        out,
        part,
        await S3Staging.create(out, { force, id: S3_PARTS_STAGING_ID }),
        signal,
      );
    }
    const abs = resolve(out);
    if (!force && (await exists(abs))) {
      throw new PmaError(
        "EXISTS",
        `${abs} already exists (finalized already?); choose another --out, or pass --force to every part and to --finalize to replace it`,
        { file: abs },
      );
    }
    return new PartOutput(abs, part, null, signal);
  }

  async open(specs: TensorSpec[], ctx: OutputContext): Promise<OutputWriter> {
    const options = outputWriterOptions(ctx);
    const shardSize = options.shardSize ?? DEFAULT_SHARD_SIZE;
    const fileBaseName = options.fileBaseName ?? "model";
    const metadata = options.metadata;
    const shards = planShards(specs, shardSize, fileBaseName);
    // The same headers SafetensorsWriter writes, computed before any file is touched so
    // that a part of another merge is refused before it writes anything.
    const headers = shards.shards.map((s) => encodeHeader(s.tensors, fileMetadata(metadata), s.file));
    const recipe: PartsRecipe = {
      count: this.part.count,
      method: ctx.method,
      coefficients: ctx.coefficients,
      dtype: ctx.dtype ?? null,
      accumulate: ctx.accumulate ?? "f32",
      allow_nonfinite: ctx.allowNonfinite ?? false,
      inputs: ctx.inputs.map((i) => ({ size_bytes: i.sizeBytes, header_sha256: i.headerSha256 })),
      files: shards.shards.map((s, k) => ({
        name: s.file,
        bytes: headers[k]!.dataStart + headers[k]!.dataLength,
        header_sha256: sha256(headers[k]!.bytes),
      })),
    };
    const newest = ctx.inputs[ctx.inputs.length - 1]!;
    const plan: PartsPlan = {
      pma_parts: PLAN_VERSION,
      digest: sha256(JSON.stringify(recipe)),
      recipe,
      shard_size: shardSize,
      file_base_name: fileBaseName,
      index_file: shards.indexFile,
      specs: specs.map((s) => ({ name: s.name, dtype: s.dtype, shape: s.shape })),
      companions: {
        from:
          newest.remote !== undefined
            ? newest.remote.isFolder
              ? newest.remote.uri
              : null
            : (await fs.promises.stat(newest.path)).isDirectory()
              ? newest.checkpoint.root
              : null,
        torch_dtype: ctx.dtype !== undefined ? torchDtypeName(ctx.dtype) : null,
      },
      inputs: ctx.inputs.map((i) => (isRemoteUri(i.path) ? i.path : resolve(i.path))),
    };
    const marker =
      this.s3 !== null
        ? await agreeOnS3Plan(this.s3, plan, this.part)
        : await agreeOnLocalPlan(this.out, plan, this.part);
    this.plan = plan;
    if (marker !== null) {
      return {
        files: [],
        order: [],
        layout: () => ({ file: "", fileOffset: 0, byteLength: 0 }),
        write: async () => undefined,
        completed: marker.record,
      };
    }

    let data = partsDataDir(this.out);
    if (this.s3 !== null) {
      this.spool = await fs.promises.mkdtemp(join(tmpdir(), "pma-part-"));
      data = join(this.spool, "out");
    }
    // Local: every part opens the same files. S3: each part's own spool, its shards uploaded whole.
    const writer = await SafetensorsWriter.create(data, specs, { ...options, shared: this.s3 === null });
    this.writer = writer;
    const order = writer.plan.shards.flatMap((s) => s.tensors.map((t) => t.name));
    const outDtype = new Map(specs.map((s) => [s.name, s.dtype]));
    const n = ctx.inputs.length;
    const reference = ctx.inputs[0]!.checkpoint.tensors;
    const items: WorkItem[] = order.map((name) => {
      const t = reference.get(name)!;
      const out = outDtype.get(name)!;
      if (!isFloatDType(t.dtype) || !isFloatDType(out)) {
        // Copied whole; one "element" that costs the bytes read and written.
        return {
          name,
          elements: t.byteLength === 0 ? 0 : 1,
          bytesPerElement: t.byteLength * (n + 1),
          cut: null,
        };
      }
      const elements = numel(t.shape);
      const outBytes = floatDTypeBytes(out);
      return {
        name,
        elements,
        bytesPerElement: n * floatDTypeBytes(t.dtype) + outBytes,
        cut: alignedCuts(writer.layout(name).fileOffset, outBytes, CUT_ALIGN_BYTES),
      };
    });
    const mine = new Map<string, ElementRange[]>();
    if (this.s3 === null) {
      for (const r of partitionWork(items, this.part.count)[this.part.index]!) {
        mine.set(r.name, [...(mine.get(r.name) ?? []), r]);
        this.touched.add(writer.layout(r.name).file);
      }
    } else {
      // Whole shards, weighed by the tensors' costs; every shard goes to some part, even one of no cost.
      const cost = new Map(items.map((t) => [t.name, t.elements * t.bytesPerElement]));
      const elements = new Map(items.map((t) => [t.name, t.elements]));
      const shardItems: WorkItem[] = writer.plan.shards.map((s) => ({
        name: s.file,
        elements: 1,
        bytesPerElement: s.tensors.reduce((a, t) => a + cost.get(t.name)!, 0),
        cut: null,
      }));
      const myShards = new Set(
        partitionWork(shardItems, this.part.count)[this.part.index]!.map((r) => r.name),
      );
      for (const s of writer.plan.shards) {
        if (!myShards.has(s.file)) continue;
        this.touched.add(`${writer.dir}/${s.file}`);
        for (const t of s.tensors) mine.set(t.name, [{ name: t.name, start: 0, end: elements.get(t.name)! }]);
      }
    }
    return {
      files: writer.plan.shards.map((s) => `${writer.dir}/${s.file}`),
      order,
      layout: (name) => writer.layout(name),
      write: (name, byteOffset, bytes) => writer.write(name, byteOffset, bytes),
      owned: (name) => mine.get(name) ?? [],
    };
  }

  async finish(): Promise<{ files: string[]; companionsFrom: string | null }> {
    // Every shard file is synced, not only this part's: cheap for the others, and the
    // headers this part wrote are durable too.
    await this.writer!.finish();
    const files = this.writer!.plan.shards.map((s) => s.file).filter((f) =>
      this.touched.has(`${this.writer!.dir}/${f}`),
    );
    return { files, companionsFrom: null };
  }

  /** Records this part as done, atomically, once its bytes are durable (after `finish`). */
  async publish(extraFiles: Record<string, string>): Promise<void> {
    const plan = this.plan!;
    const record = JSON.parse(extraFiles["pma_merge.json"] ?? "null") as MergeRecord;
    const marker: PartMarker = {
      pma_part: MARKER_VERSION,
      digest: plan.digest,
      index: this.part.index,
      count: this.part.count,
      host: hostname(),
      finished_at: new Date().toISOString(),
      record,
    };
    const text = JSON.stringify(marker, null, 2) + "\n";
    const name = partMarkerName(this.part.index, this.part.count);
    if (this.s3 !== null) {
      for (const file of [...this.touched].sort()) {
        const source = await LocalFileSource.open(file);
        try {
          await this.s3.uploadStaged(file.slice(file.lastIndexOf("/") + 1), source, this.signal);
        } finally {
          await source.close();
        }
      }
      await putStagedText(this.s3, name, text);
      await this.removeSpool();
      return;
    }
    const dir = partsDir(this.out);
    await writeFileAtomic(join(dir, name), text);
    await fsyncPath(dir);
  }

  /**
   * Leaves the shared files alone (other parts' work); without its marker this part
   * counts as not done. An S3 upload that failed was aborted by the staging.
   */
  async discard(): Promise<void> {
    await this.writer?.abort();
    await this.removeSpool();
  }

  private async removeSpool(): Promise<void> {
    if (this.spool !== null) await fs.promises.rm(this.spool, { recursive: true, force: true });
  }
}

/** Agrees on the plan in the local meeting place; returns this part's marker when it is already done. */
async function agreeOnLocalPlan(out: string, plan: PartsPlan, part: PartSpec): Promise<PartMarker | null> {
  const dir = partsDir(out);
  await fs.promises.mkdir(dir, { recursive: true }).catch((e: unknown) => {
    throw fsError(dir, "mkdir", e);
  });
  await agreeOnPlan(dir, plan);
  const marker = await readMarker(join(dir, partMarkerName(part.index, part.count))).catch(() => null); // an unreadable one is redone
  return marker !== null && marker.digest === plan.digest && marker.index === part.index ? marker : null;
}

/**
 * The same in an S3 staging prefix. S3 has no create-if-absent that every store
 * supports, so a part that finds no plan writes its own: two parts of different merges
 * starting at the same moment are then caught by finalize (their markers' digests).
 */
async function agreeOnS3Plan(
  staging: S3Staging,
  plan: PartsPlan,
  part: PartSpec,
): Promise<PartMarker | null> {
  const where = `s3://${staging.out.bucket}/${staging.stagingPrefix}`;
  const text = await getStagedText(staging, "plan.json");
  if (text === null) await putStagedText(staging, "plan.json", JSON.stringify(plan, null, 2) + "\n");
  else {
    const theirs = parsePartsPlan(text, `${where}plan.json`);
    if (theirs.digest !== plan.digest) throw mismatch(where, theirs, plan);
  }
  const name = partMarkerName(part.index, part.count);
  const markerText = await getStagedText(staging, name);
  if (markerText === null) return null;
  try {
    const marker = parseMarker(markerText, `${where}${name}`);
    return marker.digest === plan.digest && marker.index === part.index ? marker : null;
  } catch {
    return null; // an unreadable marker: the part is redone
  }
}

function mismatch(where: string, theirs: PartsPlan, mine: PartsPlan): PmaError {
  const diffs = recipeDifferences(theirs.recipe, mine.recipe);
  return new PmaError(
    "PARTS_MISMATCH",
    `${where} holds the parts of a different merge (${diffs.join("; ")}). Every part must be given the same checkpoints, method, --dtype, --accumulate, --shard-size and part count N, and the same pma version; if that merge was abandoned, remove ${where}.`,
    { file: where },
  );
}

/**
 * The first part to arrive writes plan.json (under a temporary name, then hard-linked
 * into place, which fails if another part got there first); every other part reads it
 * and refuses to go on when it describes a different merge.
 */
async function agreeOnPlan(dir: string, plan: PartsPlan): Promise<void> {
  const path = partsPlanPath(dir);
  const tmp = `${path}.pma-tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  let created = false;
  if (!(await exists(path))) {
    await writeFileAtomic(tmp, JSON.stringify(plan, null, 2) + "\n");
    try {
      await fs.promises.link(tmp, path);
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw fsError(path, "link", e);
    } finally {
      await fs.promises.rm(tmp, { force: true });
    }
  }
  if (created) {
    await fsyncPath(dir);
    return;
  }
  const theirs = await readPartsPlan(path);
  if (theirs.digest === plan.digest) return;
  throw mismatch(dir, theirs, plan);
}

function sha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
