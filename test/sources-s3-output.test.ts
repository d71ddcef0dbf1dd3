import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { LocalFileSource } from "../src/sources/local.js";
import { listS3, S3Source } from "../src/sources/s3.js";
import { s3Client } from "../src/sources/s3-client.js";
import { partSizeFor, S3Staging } from "../src/sources/s3-output.js";
import { startLocalS3, useEnv, type LocalS3 } from "./helpers/s3-server.js";

let s3: LocalS3;
let dir: string;
before(async () => {
  s3 = await startLocalS3();
  useEnv(s3.env);
  dir = mkdtempSync(join(tmpdir(), "pma-s3out-"));
});
after(async () => {
  await s3.close();
  rmSync(dir, { recursive: true, force: true });
});

async function getBytes(key: string): Promise<Buffer> {
  const res = await s3Client().send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return Buffer.from(await res.Body!.transformToByteArray());
}

async function keys(prefix: string): Promise<string[]> {
  return (await listS3({ bucket: s3.bucket, key: prefix })).map((o) => o.key);
}

describe("S3 output staging (s3rver, real SDK)", () => {
  it("uploads multipart, hides everything until publish, writes the last files last, and reads back byte-identical", async () => {
    // Two and a half parts, so the multipart path and an odd-sized last part are both used.
    const size = partSizeFor(0) * 2 + 12345;
    const data = randomBytes(size);
    const file = join(dir, "a.bin");
    writeFileSync(file, data);
    const staging = await S3Staging.create(`s3://${s3.bucket}/runs/merged`);
    const source = await LocalFileSource.open(file);
    await staging.uploadStaged("model-00001-of-00001.safetensors", source);
    await source.close();
    assert.deepEqual(await keys("runs/merged/"), [], "nothing is visible before publish");
    assert.deepEqual(await staging.staged(), ["model-00001-of-00001.safetensors"]);
    await staging.publish(
      ["model-00001-of-00001.safetensors"],
      [
        ["model.safetensors.index.json", "{}"],
        ["pma_merge.json", '{"ok":true}'],
      ],
    );
    assert.deepEqual(await keys("runs/merged/"), [
      "runs/merged/model-00001-of-00001.safetensors",
      "runs/merged/model.safetensors.index.json",
      "runs/merged/pma_merge.json",
    ]);
    assert.ok(
      (await getBytes("runs/merged/model-00001-of-00001.safetensors")).equals(data),
      "uploaded bytes read back identical",
    );
    assert.deepEqual(await keys(`runs/.merged.pma-staging-${staging.id}/`), [], "staging prefix removed");
    // Ranged reads of the published object through the source match the file.
    const obj = await S3Source.open({
      bucket: s3.bucket,
      key: "runs/merged/model-00001-of-00001.safetensors",
    });
    const part = new Uint8Array(1000);
    await obj.read(part, size - 1000);
    assert.ok(Buffer.from(part).equals(data.subarray(size - 1000)));
  });

  it("refuses an existing output without force, and replaces it (dropping stale files) with force", async () => {
    await s3Client().send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: "runs/old/stale.safetensors", Body: "x" }),
    );
    await assert.rejects(
      S3Staging.create(`s3://${s3.bucket}/runs/old`),
      (e: Error & { code?: string }) => e.code === "EXISTS" && /--force/.test(e.message),
    );
    const staging = await S3Staging.create(`s3://${s3.bucket}/runs/old`, { force: true });
    const file = join(dir, "b.bin");
    writeFileSync(file, "new bytes");
    const source = await LocalFileSource.open(file);
    await staging.uploadStaged("model.safetensors", source);
    await staging.publish(["model.safetensors"], [["pma_merge.json", "{}"]]);
    assert.deepEqual(await keys("runs/old/"), ["runs/old/model.safetensors", "runs/old/pma_merge.json"]);
  });

  it("discard leaves nothing visible, and publish refuses a missing file", async () => {
    const staging = await S3Staging.create(`s3://${s3.bucket}/runs/gone`);
    const file = join(dir, "c.bin");
    writeFileSync(file, randomBytes(1000));
    await staging.uploadStaged("model-00001-of-00002.safetensors", await LocalFileSource.open(file));
    await assert.rejects(
      staging.publish(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"], []),
      /never uploaded \(model-00002-of-00002/,
    );
    await staging.discard();
    assert.deepEqual(await keys("runs/gone"), []);
    assert.deepEqual(await keys("runs/.gone"), []);
  });
});
