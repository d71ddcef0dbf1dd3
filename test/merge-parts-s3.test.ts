import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { isPmaError } from "../src/common/errors.js";
import { writeSafetensors } from "../src/formats/safetensors-writer.js";
import { finalizeMerge } from "../src/merge/finalize.js";
import { merge, type MergeOptions } from "../src/merge/merger.js";
import { listS3 } from "../src/sources/s3.js";
import { s3Client } from "../src/sources/s3-client.js";
import { rng, tempDir, toBytes, treeHash } from "./helpers/fixtures.js";
import { startLocalS3, useEnv, type LocalS3 } from "./helpers/s3-server.js";

/**
 * --part with an S3 output, on s3rver through the real AWS SDK: each part uploads its
 * whole shards as staged multipart uploads, finalize publishes; the objects read back
 * byte-identical to a one-process merge written to local disk.
 */
describe("partitioned merge into S3 (s3rver)", () => {
  let s3: LocalS3;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let inputs: string[];
  let reference: Record<string, string>;
  const SHARD = 30_000;

  async function objects(prefix: string): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const o of await listS3({ bucket: s3.bucket, key: prefix })) {
      const res = await s3Client().send(new GetObjectCommand({ Bucket: s3.bucket, Key: o.key }));
      out[o.key.slice(prefix.length)] = createHash("sha256")
        .update(await res.Body!.transformToByteArray())
        .digest("hex");
    }
    return out;
  }
  const keys = async (prefix: string) => (await listS3({ bucket: s3.bucket, key: prefix })).map((o) => o.key);

  before(async () => {
    s3 = await startLocalS3();
    useEnv(s3.env);
    tmp = await tempDir("pma-parts-s3-");
    const r = rng(21);
    inputs = [];
    for (let c = 1; c <= 3; c++) {
      const dir = join(tmp.dir, `run/checkpoint-${c * 100}`);
      await mkdir(dir, { recursive: true });
      const tensor = (name: string, shape: number[]) => {
        const n = shape.reduce((a, b) => a * b, 1);
        return {
          name,
          dtype: "BF16" as const,
          shape,
          data: toBytes(
            Array.from({ length: n }, () => Math.round((r() * 2 - 1) * 256) / 256),
            "BF16",
          ),
        };
      };
      await writeSafetensors(join(dir, "model.safetensors"), [
        tensor("embed", [150, 97]),
        ...[0, 1, 2, 3, 4].map((l) => tensor(`layer.${l}.w`, [61, 67])),
        tensor("norm", [97]),
      ]);
      await writeFile(join(dir, "config.json"), JSON.stringify({ model_type: "llama", c }));
      inputs.push(dir);
    }
    const local = join(tmp.dir, "reference");
    await merge({ inputs, out: local, shardSize: SHARD });
    reference = await treeHash(local);
    delete reference["pma_merge.json"];
  });
  after(async () => {
    await s3?.close();
    await tmp?.cleanup();
  });

  test("3 parts + finalize publish the one-process merge's files; nothing is visible before", async () => {
    const out = `s3://${s3.bucket}/runs/merged`;
    const base: MergeOptions = { inputs, out, shardSize: SHARD, threads: 1 };
    const records = await Promise.all(
      [0, 1, 2].map((index) => merge({ ...base, part: { index, count: 3 } })),
    );
    assert.deepEqual(
      records.flatMap((r) => r.files).sort(),
      Object.keys(reference)
        .filter((f) => f.endsWith(".safetensors"))
        .sort(),
      "each shard uploaded by exactly one part",
    );
    assert.deepEqual(await keys("runs/merged/"), [], "nothing visible before finalize");
    const record = await finalizeMerge({ out });
    const published = await objects("runs/merged/");
    const json = JSON.parse(
      Buffer.from(
        await (
          await s3Client().send(
            new GetObjectCommand({ Bucket: s3.bucket, Key: "runs/merged/pma_merge.json" }),
          )
        ).Body!.transformToByteArray(),
      ).toString(),
    );
    assert.deepEqual(
      json.parts.map((p: { index: number }) => p.index),
      [0, 1, 2],
    );
    assert.equal(record.parts!.length, 3);
    delete published["pma_merge.json"];
    assert.deepEqual(published, reference);
    assert.deepEqual(await keys("runs/.merged.pma-staging-parts/"), [], "staging prefix removed");
  });

  test("finalize refuses while a part is missing, leaving nothing visible; a rerun of a done part does nothing", async () => {
    const out = `s3://${s3.bucket}/runs/partial`;
    const base: MergeOptions = { inputs, out, shardSize: SHARD, threads: 1 };
    await merge({ ...base, part: { index: 0, count: 2 } });
    await assert.rejects(
      finalizeMerge({ out }),
      (e: unknown) =>
        isPmaError(e, "PARTS_INCOMPLETE") && /missing \(not finished, or not run\): 1\/2/.test(e.message),
    );
    assert.deepEqual(await keys("runs/partial/"), []);
    const notes: string[] = [];
    await merge({ ...base, part: { index: 0, count: 2 }, onNote: (n) => notes.push(n) });
    assert.match(notes.join("\n"), /already merged/);
    await assert.rejects(
      merge({ ...base, part: { index: 1, count: 2 }, method: { method: "wma" } }),
      (e: unknown) => isPmaError(e, "PARTS_MISMATCH"),
    );
    await merge({ ...base, part: { index: 1, count: 2 } });
    await finalizeMerge({ out });
    const published = await objects("runs/partial/");
    delete published["pma_merge.json"];
    assert.deepEqual(published, reference);
  });
});
