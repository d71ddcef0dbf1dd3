import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { writeSafetensors, type TensorData } from "../src/formats/safetensors-writer.js";
import { gguf } from "../src/formats/gguf-values.js";
import { writeGguf } from "../src/formats/gguf-writer.js";
import { merge, type MergeRecord } from "../src/merge/merger.js";
import { HttpSource } from "../src/sources/http.js";
import { listS3, S3Source } from "../src/sources/s3.js";
import { s3Client } from "../src/sources/s3-client.js";
import type { FloatDType } from "../src/tensor/dtype.js";
import { representable, rng, tempDir, toBytes } from "./helpers/fixtures.js";
import { commitOf, startLocalHub, type LocalHub } from "./helpers/hub-server.js";
import { startPma } from "./helpers/processes.js";
import { startS3FaultProxy, type S3FaultProxy } from "./helpers/s3-fault-proxy.js";
import { startLocalS3, useEnv, type LocalS3 } from "./helpers/s3-server.js";

/**
 * Merges from a real S3-compatible server (s3rver, through the real AWS SDK) and from a
 * local Hub server, with faults injected, must give the bytes of the same merge from
 * local disk, which merge-merger.test.ts checks against float64 math.
 */
const SPECS: { name: string; dtype: FloatDType; shape: number[] }[] = [
  { name: "model.embed_tokens.weight", dtype: "BF16", shape: [61, 37] },
  { name: "model.layers.0.mlp.up_proj.weight", dtype: "F16", shape: [29, 31] },
  { name: "model.norm.weight", dtype: "F32", shape: [1001] },
];
const STEPS = [100, 200, 300];
const TOKENS_PER_STEP = 10_000_000;
const CHUNK = 97; // elements: many ranged reads per tensor, and odd boundaries

let tmp: { dir: string; cleanup(): Promise<void> };
let s3: LocalS3;
let proxy: S3FaultProxy;
let hub: LocalHub;
const local: string[] = [];
let reference: Map<string, Buffer>;
const TOKEN = "hf_test_secret_token_0123456789";

async function modelFiles(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const name of (await readdir(dir)).sort())
    if (name !== "pma_merge.json") out.set(name, await readFile(join(dir, name)));
  return out;
}

function assertSameFiles(got: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...got.keys()], [...reference.keys()], `${what}: same files`);
  for (const [name, bytes] of reference)
    assert.ok(got.get(name)!.equals(bytes), `${what}: ${name} is byte-identical to the local merge`);
}

before(async () => {
  tmp = await tempDir("pma-remote-");
  const r = rng(7);
  for (const step of STEPS) {
    const dir = join(tmp.dir, "run", `checkpoint-${step}`);
    await mkdir(dir, { recursive: true });
    const tensors: TensorData[] = SPECS.map((s) => {
      const n = s.shape.reduce((a, b) => a * b, 1);
      return {
        name: s.name,
        dtype: s.dtype,
        shape: s.shape,
        data: toBytes(
          representable(
            Array.from({ length: n }, () => r() * 2 - 1),
            s.dtype,
          ),
          s.dtype,
        ),
      };
    });
    await writeSafetensors(join(dir, "single.safetensors"), tensors);
    // Sharded like a real checkpoint: an index and three shards (made by a one-input merge).
    await merge({ inputs: [join(dir, "single.safetensors")], out: join(dir, "sharded"), shardSize: 4000 });
    for (const name of await readdir(join(dir, "sharded")))
      if (name !== "pma_merge.json")
        await writeFile(join(dir, name), await readFile(join(dir, "sharded", name)));
    await writeFile(
      join(dir, "config.json"),
      JSON.stringify({ model_type: "llama", torch_dtype: "bfloat16" }),
    );
    await writeFile(
      join(dir, "trainer_state.json"),
      JSON.stringify({ global_step: step, num_input_tokens_seen: step * TOKENS_PER_STEP }),
    );
    const { rm } = await import("node:fs/promises");
    await rm(join(dir, "sharded"), { recursive: true });
    await rm(join(dir, "single.safetensors"));
    local.push(dir);
  }
  await merge({ inputs: local, out: join(tmp.dir, "reference"), chunkElements: CHUNK, shardSize: 4000 });
  reference = await modelFiles(join(tmp.dir, "reference"));
  assert.ok(reference.has("model.safetensors.index.json") && reference.has("config.json"));

  s3 = await startLocalS3();
  proxy = await startS3FaultProxy(s3.endpoint);
  useEnv({ ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint, PMA_IO_TIMEOUT: "0.5" });
  for (const [i, dir] of local.entries()) {
    for (const name of await readdir(dir)) {
      await s3Client().send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: `run/checkpoint-${STEPS[i]}/${name}`,
          Body: await readFile(join(dir, name)),
        }),
      );
    }
  }
  hub = await startLocalHub(
    "org/run",
    local.map((dir, i) => ({ name: `stage1-step${STEPS[i]}-tokens${STEPS[i]! / 100}B`, dir })),
    TOKEN,
  );
  useEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN });
});

after(async () => {
  await proxy?.close();
  await s3?.close();
  await hub?.close();
  await tmp?.cleanup();
});

describe("merging remote checkpoints", () => {
  it("from S3 prefixes (newest first on the command line) gives the local merge's bytes", async () => {
    const out = join(tmp.dir, "from-s3");
    const record = await merge({
      inputs: STEPS.map((s) => `s3://${s3.bucket}/run/checkpoint-${s}/`).reverse(),
      out,
      chunkElements: CHUNK,
      shardSize: 4000,
    });
    assert.equal(record.order_basis, "tokens");
    assert.deepEqual(
      record.inputs.map((i) => i.tokens),
      STEPS.map((s) => s * TOKENS_PER_STEP),
    );
    assertSameFiles(await modelFiles(out), "s3 inputs");
  });

  it("retries a reset, a 503 with Retry-After, a truncated body and a stalled server, and still gives the same bytes", async () => {
    proxy.faults.push("reset", "503", "truncate", "stall");
    const out = join(tmp.dir, "from-s3-faults");
    await merge({
      inputs: STEPS.map((s) => `s3://${s3.bucket}/run/checkpoint-${s}`),
      out,
      chunkElements: CHUNK,
      shardSize: 4000,
    });
    assert.deepEqual(proxy.faults.injected, ["reset", "503", "truncate", "stall"]);
    assert.equal(proxy.faults.pending, 0);
    assertSameFiles(await modelFiles(out), "s3 inputs with faults");
  });

  it("writes to s3://bucket/prefix: published files read back byte-identical, record last, no staging left", async () => {
    const record = await merge({
      inputs: STEPS.map((s) => `s3://${s3.bucket}/run/checkpoint-${s}`),
      out: `s3://${s3.bucket}/merged/sma`,
      chunkElements: CHUNK,
      shardSize: 4000,
    });
    const objects = await listS3({ bucket: s3.bucket, key: "merged/" });
    assert.deepEqual(
      objects.map((o) => o.key).sort(),
      [...reference.keys(), "pma_merge.json"].map((n) => `merged/sma/${n}`).sort(),
    );
    for (const [name, bytes] of reference) {
      const res = await s3Client().send(
        new GetObjectCommand({ Bucket: s3.bucket, Key: `merged/sma/${name}` }),
      );
      assert.ok(
        Buffer.from(await res.Body!.transformToByteArray()).equals(bytes),
        `${name} read back identical`,
      );
    }
    const res = await s3Client().send(
      new GetObjectCommand({ Bucket: s3.bucket, Key: "merged/sma/pma_merge.json" }),
    );
    assert.deepEqual((JSON.parse(await res.Body!.transformToString()) as MergeRecord).files, record.files);
    assert.deepEqual(await listS3({ bucket: s3.bucket, key: "merged/.sma" }), []);
  });

  it("from Hub revisions: tokens from trainer_state.json, ranged reads only, the token sent but never recorded", async () => {
    const out = join(tmp.dir, "from-hub");
    hub.faults.push("reset", "503", "truncate", "stall");
    const record = await merge({
      inputs: STEPS.map((s) => `hf://org/run@stage1-step${s}-tokens${s / 100}B`),
      out,
      chunkElements: CHUNK,
      shardSize: 4000,
    });
    assertSameFiles(await modelFiles(out), "hub inputs");
    assert.equal(hub.faults.pending, 0);
    assert.deepEqual(
      record.inputs.map((i) => i.tokens),
      STEPS.map((s) => s * TOKENS_PER_STEP),
    );
    const cdn = hub.requests.filter((r) => r.path.startsWith("/cdn/") && r.path.endsWith(".safetensors"));
    assert.ok(
      cdn.length > 0 && cdn.every((r) => r.range !== undefined),
      "every weight-file request is ranged",
    );
    assert.ok(
      hub.requests
        .filter((r) => r.path.startsWith("/api/") || r.path.includes("/resolve/"))
        .every((r) => r.authorized),
    );
    assert.ok(!(await readFile(join(out, "pma_merge.json"), "utf8")).includes(TOKEN));
  });

  it("a file that changes between reads ends in SOURCE_CHANGED, never mixed bytes (Hub and S3)", async () => {
    const rev = `stage1-step100-tokens1B`;
    const name = "model-00001-of-00003.safetensors";
    const source = await HttpSource.open(`${hub.url}/org/run/resolve/${commitOf(rev)}/${name}`, {
      auth: "hf",
    });
    const part = new Uint8Array(16);
    await source.read(part, 0);
    const bytes = await readFile(join(local[0]!, name));
    hub.replace(
      rev,
      name,
      Buffer.concat([bytes.subarray(0, 100), Buffer.from("changed"), bytes.subarray(107)]),
    );
    await assert.rejects(
      source.read(part, 8),
      (e: Error & { code?: string }) =>
        e.code === "SOURCE_CHANGED" && /changed during the merge/.test(e.message),
    );

    const key = `run/checkpoint-100/${name}`;
    const obj = await S3Source.open({ bucket: s3.bucket, key });
    await obj.read(part, 0);
    await s3Client().send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: Buffer.concat([bytes, Buffer.from("x")]) }),
    );
    await assert.rejects(obj.read(part, 8), (e: Error & { code?: string }) => e.code === "SOURCE_CHANGED");
    await s3Client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: bytes }));
  });

  it("GGUF files read through the Hub source (a header past the first 4 MiB fetch) merge to the local merge's bytes", async () => {
    const r = rng(11);
    for (const [i, dir] of local.entries()) {
      const metadata = new Map([
        ["general.architecture", gguf.string("llama")],
        // A 5 MB tokenizer-sized value: the remote header reader must fetch past its first 4 MiB.
        ["tokenizer.chat_template", gguf.string("x".repeat(5_000_000 + i))],
      ]);
      const values = Array.from({ length: 3 * 257 }, () => r() * 2 - 1);
      await writeGguf(join(dir, "model.gguf"), metadata, [
        { name: "w", type: 0, dims: [257, 3], data: toBytes(values, "F32") },
      ]);
    }
    const localOut = join(tmp.dir, "local.gguf");
    const remoteOut = join(tmp.dir, "remote.gguf");
    await merge({
      inputs: local.map((d) => join(d, "model.gguf")),
      out: localOut,
      keepOrder: true,
      chunkElements: CHUNK,
    });
    await merge({
      inputs: STEPS.map((s) => `hf://org/run@stage1-step${s}-tokens${s / 100}B/model.gguf`),
      out: remoteOut,
      keepOrder: true,
      chunkElements: CHUNK,
    });
    assert.ok((await readFile(remoteOut)).equals(await readFile(localOut)));
  });

  it("kill -9 during an S3 upload leaves nothing under the output prefix, and a rerun succeeds", async () => {
    const args = [
      "merge",
      ...STEPS.map((s) => `s3://${s3.bucket}/run/checkpoint-${s}`),
      "--out",
      `s3://${s3.bucket}/merged/killed`,
      "--shard-size",
      "4KB",
    ];
    const run = startPma(args);
    let killed = false;
    proxy.onRequest = (method, path) => {
      if (!killed && method === "PUT" && path.includes("partNumber=")) {
        killed = true;
        run.child.kill("SIGKILL");
      }
    };
    const end = await run.exited;
    proxy.onRequest = null;
    assert.equal(end.signal, "SIGKILL", `killed during the upload (stderr: ${end.stderr})`);
    assert.deepEqual(await listS3({ bucket: s3.bucket, key: "merged/killed/" }), []);
    const rerun = await startPma(args).exited;
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.ok(
      (await listS3({ bucket: s3.bucket, key: "merged/killed/" })).some((o) =>
        o.key.endsWith("pma_merge.json"),
      ),
    );
    assert.ok(!rerun.stdout.includes("S3RVER") && !rerun.stderr.includes("S3RVER"));
  });
});
