import * as assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { openCheckpointTensors, type CheckpointTensors } from "../src/formats/checkpoint-files.js";
import {
  planShards,
  SafetensorsWriter,
  writeSafetensors,
  type TensorData,
} from "../src/formats/safetensors-writer.js";
import { patternBytes, rawSafetensors, rejectsWith, tempDir } from "./formats-safetensors-fixtures.js";

let dir = "";
let cleanup: () => Promise<void> = async () => {};
let counter = 0;
before(async () => {
  ({ dir, cleanup } = await tempDir());
});
after(() => cleanup());

async function freshDir(): Promise<string> {
  const d = path.join(dir, `ck${counter++}`);
  await fs.mkdir(d);
  return d;
}

const u8 = (name: string, n: number, seed: number): TensorData => ({
  name,
  dtype: "U8",
  shape: [n],
  data: patternBytes(n, seed),
});

async function expectTensors(ck: CheckpointTensors, tensors: TensorData[]): Promise<void> {
  assert.deepEqual([...ck.tensors.keys()].sort(), tensors.map((t) => t.name).sort());
  for (const t of tensors) {
    const e = ck.tensors.get(t.name)!;
    assert.equal(e.dtype, t.dtype);
    assert.deepEqual(e.shape, t.shape);
    assert.deepEqual(await e.file.read(t.name), t.data);
  }
}

/** Writes shards by hand plus an index naming them, for the validation tests. */
async function handMade(shards: Record<string, TensorData[]>, index: unknown): Promise<string> {
  const d = await freshDir();
  for (const [file, tensors] of Object.entries(shards)) await writeSafetensors(path.join(d, file), tensors);
  await fs.writeFile(
    path.join(d, "model.safetensors.index.json"),
    typeof index === "string" ? index : JSON.stringify(index),
  );
  return d;
}

describe("planShards", () => {
  it("fills shards greedily in reference order; an oversized tensor gets its own", () => {
    const specs = [
      { name: "e", dtype: "U8" as const, shape: [30] },
      { name: "a", dtype: "U8" as const, shape: [40] },
      { name: "big", dtype: "F32" as const, shape: [50] },
      { name: "c", dtype: "U8" as const, shape: [60] },
      { name: "b", dtype: "U8" as const, shape: [50] },
      { name: "d", dtype: "U8" as const, shape: [10] },
    ];
    const plan = planShards(specs, 100);
    // F32 sorts before U8; a shard closes only when the next tensor would pass 100.
    assert.deepEqual(
      plan.shards.map((s) => [s.file, s.tensors.map((t) => t.name), s.dataLength]),
      [
        ["model-00001-of-00003.safetensors", ["big"], 200],
        ["model-00002-of-00003.safetensors", ["a", "b"], 90],
        ["model-00003-of-00003.safetensors", ["c", "d", "e"], 100],
      ],
    );
    assert.equal(plan.totalSize, 390);
    assert.equal(plan.indexFile, "model.safetensors.index.json");
  });

  it("uses a single model.safetensors when everything fits", () => {
    const plan = planShards([{ name: "w", dtype: "BF16", shape: [4] }], 8);
    assert.deepEqual(
      plan.shards.map((s) => s.file),
      ["model.safetensors"],
    );
    assert.equal(plan.indexFile, null);
    assert.deepEqual(
      planShards([], 8).shards.map((s) => s.file),
      ["model.safetensors"],
    );
    assert.equal(
      planShards([{ name: "w", dtype: "U8", shape: [1] }], 1, "consolidated").shards[0]!.file,
      "consolidated.safetensors",
    );
  });

  it("rejects a shard size that is not positive", () => {
    assert.throws(() => planShards([], 0), { code: "USAGE" });
    assert.throws(() => planShards([], Number.NaN), { code: "USAGE" });
  });
});

describe("sharded writer", () => {
  const tensors: TensorData[] = [
    { name: "model.embed_tokens.weight", dtype: "BF16", shape: [8, 4], data: patternBytes(64, 1) },
    { name: "model.norm.weight", dtype: "F32", shape: [4], data: patternBytes(16, 2) },
    { name: "lm_head.weight", dtype: "BF16", shape: [8, 4], data: patternBytes(64, 3) },
    { name: "model.layers.0.mlp.up_proj.weight", dtype: "BF16", shape: [6, 4], data: patternBytes(48, 4) },
    { name: "step", dtype: "I64", shape: [], data: patternBytes(8, 5) },
    { name: "empty", dtype: "F16", shape: [0], data: new Uint8Array(0) },
  ];

  it("writes shards and an index that reopen to identical tensors", async () => {
    const out = path.join(dir, "sharded-out");
    const w = await SafetensorsWriter.create(out, tensors, { shardSize: 70, metadata: { note: "x" } });
    // Workers write through layout(): position them exactly as a separate process would.
    for (const t of [...tensors].reverse()) {
      const l = w.layout(t.name);
      assert.equal(l.byteLength, t.data.length);
      const fh = await fs.open(l.file, "r+");
      await fh.write(t.data, 0, t.data.length, l.fileOffset);
      await fh.close();
    }
    const { files, totalSize } = await w.finish();
    const shardFiles = w.plan.shards.map((s) => s.file);
    assert.ok(shardFiles.length > 2);
    assert.deepEqual(
      files,
      [...shardFiles, "model.safetensors.index.json"].map((f) => path.join(out, f)),
    );
    assert.equal(totalSize, 200);
    assert.deepEqual((await fs.readdir(out)).sort(), [...shardFiles, "model.safetensors.index.json"].sort());

    const indexText = await fs.readFile(path.join(out, "model.safetensors.index.json"), "utf8");
    const index = JSON.parse(indexText) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    assert.equal(index.metadata.total_size, 200);
    assert.deepEqual(Object.keys(index.weight_map), tensors.map((t) => t.name).sort());
    assert.ok(
      indexText.endsWith("}\n") && indexText.includes('\n  "weight_map": {\n'),
      "indent=2 like huggingface_hub",
    );

    const ck = await openCheckpointTensors(out);
    assert.equal(ck.kind, "sharded");
    assert.equal(ck.root, out);
    assert.deepEqual(
      ck.files.map((f) => path.basename(f.path)),
      shardFiles,
    );
    for (const [name, file] of Object.entries(index.weight_map))
      assert.equal(path.basename(ck.tensors.get(name)!.file.path), file);
    await expectTensors(ck, tensors);
    assert.deepEqual(ck.metadata, { format: "pt", note: "x" });
    assert.deepEqual(ck.indexJson, index);
    await ck.close();
  });

  it("opens the same checkpoint from its index file path", async () => {
    const ck = await openCheckpointTensors(path.join(dir, "sharded-out", "model.safetensors.index.json"));
    assert.equal(ck.kind, "sharded");
    await expectTensors(ck, tensors);
    await ck.close();
  });

  it("opens single files from a directory or a bare path", async () => {
    const d = await freshDir();
    const w = await SafetensorsWriter.create(d, tensors);
    for (const t of tensors) await w.write(t.name, 0, t.data);
    await w.finish();
    for (const p of [d, path.join(d, "model.safetensors")]) {
      const ck = await openCheckpointTensors(p);
      assert.equal(ck.kind, "single");
      assert.equal(ck.root, d);
      assert.equal(ck.files.length, 1);
      assert.equal(ck.indexJson, undefined);
      await expectTensors(ck, tensors);
      await ck.close();
    }
  });
});

describe("index validation", () => {
  const a = u8("a", 3, 1);
  const b = u8("b", 5, 2);
  const c = u8("c", 2, 3);
  const S1 = "model-00001-of-00002.safetensors";
  const S2 = "model-00002-of-00002.safetensors";
  const good = { [S1]: [a, b], [S2]: [c] };
  const indexPathOf = (d: string) => path.join(d, "model.safetensors.index.json");

  it("accepts a consistent hand-made index", async () => {
    const d = await handMade(good, { metadata: { total_size: 10 }, weight_map: { c: S2, a: S1, b: S1 } });
    const ck = await openCheckpointTensors(d);
    await expectTensors(ck, [a, b, c]);
    await ck.close();
  });

  it("rejects an index that is not JSON or lacks a weight_map", async () => {
    for (const bad of [
      "{",
      "[]",
      JSON.stringify({ metadata: {} }),
      JSON.stringify({ weight_map: [] }),
      JSON.stringify({ weight_map: { a: 1 } }),
    ]) {
      const d = await handMade(good, bad);
      await rejectsWith(() => openCheckpointTensors(d), "INDEX_INVALID", indexPathOf(d));
    }
  });

  it("rejects a total_size that is not the real sum", async () => {
    const d = await handMade(good, { metadata: { total_size: 11 }, weight_map: { a: S1, b: S1, c: S2 } });
    await rejectsWith(() => openCheckpointTensors(d), "INDEX_INVALID", indexPathOf(d), ["total_size", "10"]);
    const d2 = await handMade(good, { metadata: { total_size: "10" }, weight_map: { a: S1, b: S1, c: S2 } });
    await rejectsWith(() => openCheckpointTensors(d2), "INDEX_INVALID", indexPathOf(d2));
  });

  it("rejects a tensor stored in a shard but missing from weight_map", async () => {
    const d = await handMade(good, { weight_map: { a: S1, c: S2 } });
    await rejectsWith(() => openCheckpointTensors(d), "INDEX_INVALID", indexPathOf(d), ['"b"', S1]);
  });

  it("rejects a weight_map entry whose shard lacks the tensor", async () => {
    const d = await handMade(good, { weight_map: { a: S1, b: S1, c: S2, ghost: S2 } });
    await rejectsWith(() => openCheckpointTensors(d), "INDEX_INVALID", indexPathOf(d), ['"ghost"', S2]);
  });

  it("rejects a tensor mapped to the wrong shard", async () => {
    const d = await handMade(good, { weight_map: { a: S1, b: S2, c: S2 } });
    await rejectsWith(() => openCheckpointTensors(d), "INDEX_INVALID", indexPathOf(d), ['"b"']);
  });

  it("rejects a missing shard", async () => {
    const d = await handMade({ [S1]: [a, b] }, { weight_map: { a: S1, b: S1, c: S2 } });
    await rejectsWith(() => openCheckpointTensors(d), "INDEX_INVALID", indexPathOf(d), [S2]);
  });

  it("rejects a tensor stored in two shards", async () => {
    const d = await handMade({ [S1]: [a, b], [S2]: [c, a] }, { weight_map: { a: S1, b: S1, c: S2 } });
    await rejectsWith(() => openCheckpointTensors(d), "DUPLICATE_NAME", path.join(d, S2), ['"a"', S1]);
  });

  it("rejects a tensor listed twice in the index JSON", async () => {
    const d = await handMade(good, `{"weight_map":{"a":"${S1}","b":"${S1}","c":"${S2}","a":"${S2}"}}`);
    await rejectsWith(() => openCheckpointTensors(d), "DUPLICATE_NAME", indexPathOf(d), ['"a"']);
  });

  it("rejects shard names that escape the directory", async () => {
    const d = await handMade(good, { weight_map: {} });
    // A real, valid safetensors file just outside the checkpoint directory.
    await writeSafetensors(path.join(dir, "outside.safetensors"), [a]);
    for (const name of [
      "../outside.safetensors",
      "sub/../../outside.safetensors",
      path.join(dir, "outside.safetensors"),
      "..\\outside.safetensors",
      "C:\\x.safetensors",
    ]) {
      await fs.writeFile(indexPathOf(d), JSON.stringify({ weight_map: { a: name } }));
      await rejectsWith(() => openCheckpointTensors(d), "PATH_UNSAFE", indexPathOf(d), [name]);
    }
  });

  it("rejects a shard that is a symlink leading outside, unless allowed", async () => {
    const d = await handMade(good, { weight_map: { a: "link.safetensors" } });
    await writeSafetensors(path.join(dir, "target.safetensors"), [a]);
    await fs.symlink(path.join(dir, "target.safetensors"), path.join(d, "link.safetensors"));
    await rejectsWith(() => openCheckpointTensors(d), "PATH_UNSAFE", indexPathOf(d), ["link.safetensors"]);
    const ck = await openCheckpointTensors(d, { allowExternalSymlinks: true });
    await expectTensors(ck, [a]);
    await ck.close();
  });

  it("accepts a symlink that stays inside, and a shard in a subdirectory", async () => {
    const d = await freshDir();
    await fs.mkdir(path.join(d, "blobs"));
    await writeSafetensors(path.join(d, "blobs", "x.safetensors"), [a]);
    await fs.symlink(path.join("blobs", "x.safetensors"), path.join(d, "s1.safetensors"));
    await writeSafetensors(path.join(d, "blobs", "y.safetensors"), [b]);
    await fs.writeFile(
      indexPathOf(d),
      JSON.stringify({ weight_map: { a: "s1.safetensors", b: "blobs/y.safetensors" } }),
    );
    const ck = await openCheckpointTensors(d);
    await expectTensors(ck, [a, b]);
    await ck.close();
  });

  it("reports a malformed shard with the shard's own error", async () => {
    const d = await handMade({ [S1]: [a, b] }, { weight_map: { a: S1, b: S1, c: S2 } });
    await fs.writeFile(
      path.join(d, S2),
      rawSafetensors(`{"c":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, 3),
    );
    await rejectsWith(() => openCheckpointTensors(d), "DATA_LENGTH_MISMATCH", path.join(d, S2));
  });
});

describe("checkpoint directory detection", () => {
  it("prefers model.safetensors over an index, as transformers does", async () => {
    const d = await handMade(
      { [`model-00001-of-00001.safetensors`]: [u8("x", 1, 1)] },
      { weight_map: { x: "model-00001-of-00001.safetensors" } },
    );
    await writeSafetensors(path.join(d, "model.safetensors"), [u8("y", 1, 2)]);
    const ck = await openCheckpointTensors(d);
    assert.equal(ck.kind, "single");
    assert.deepEqual([...ck.tensors.keys()], ["y"]);
    await ck.close();
  });

  it("says what it expected in a directory with neither file", async () => {
    const d = await freshDir();
    await fs.writeFile(path.join(d, "optimizer.pt"), "");
    await fs.writeFile(path.join(d, "consolidated.safetensors"), "");
    await rejectsWith(() => openCheckpointTensors(d), "IO", d, [
      "model.safetensors",
      "model.safetensors.index.json",
      "consolidated.safetensors",
    ]);
    await rejectsWith(() => openCheckpointTensors(path.join(d, "nothing")), "IO", path.join(d, "nothing"));
  });

  it("explains that other frameworks' weights are not supported", async () => {
    const d = await freshDir();
    await fs.writeFile(path.join(d, "tf_model.h5"), "");
    await rejectsWith(() => openCheckpointTensors(d), "FORMAT_UNSUPPORTED", d, [
      "tf_model.h5",
      "safetensors",
    ]);
    await rejectsWith(() => openCheckpointTensors(path.join(d, "tf_model.h5")), "FORMAT_UNSUPPORTED", d);
  });

  it("reads pytorch_model.bin as a torch.save archive and says when it is not one", async () => {
    const d = await freshDir();
    await fs.writeFile(path.join(d, "pytorch_model.bin"), "");
    await rejectsWith(() => openCheckpointTensors(d), "METADATA_INVALID", path.join(d, "pytorch_model.bin"), [
      "torch.save",
    ]);
  });

  it("explains an index whose shards are not its format's files", async () => {
    const d = await handMade({}, { weight_map: { a: "pytorch_model-00001-of-00002.bin" } });
    await rejectsWith(() => openCheckpointTensors(d), "INDEX_INVALID", indexPathOf(d), [
      "pytorch_model-00001-of-00002.bin",
      ".safetensors",
    ]);
    const d2 = await freshDir();
    await fs.writeFile(path.join(d2, "tf_model.h5.index.json"), JSON.stringify({ weight_map: {} }));
    await rejectsWith(() => openCheckpointTensors(d2), "FORMAT_UNSUPPORTED", d2, ["tf_model.h5.index.json"]);
  });

  function indexPathOf(d: string): string {
    return path.join(d, "model.safetensors.index.json");
  }
});
