import * as assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { after, before, describe, it } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { openDcp } from "../src/formats/dcp/open.js";
import { DcpReader } from "../src/formats/dcp/reader.js";
import { readSegmentRecords } from "../src/formats/dcp/segment-zip.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { writeSafetensors } from "../src/formats/safetensors-writer.js";
import { writeSyntheticDcp } from "../src/formats/dcp/synthetic-writer.js";
import { dcpTensorRole, mergeDcp } from "../src/merge/dcp-merge.js";
import { tempDir } from "./helpers/fixtures.js";
import { TORCH_FIXTURES } from "./helpers/torch-fixtures.js";

const TRAJ = `${TORCH_FIXTURES}dcp/trajectory/`;
let tmp = "";
let cleanup: () => Promise<void> = async () => {};
before(async () => ({ dir: tmp, cleanup } = await tempDir("pma-dcp-merge-")));
after(() => cleanup());

const sha = (p: string) => createHash("sha256").update(fs.readFileSync(p)).digest("hex");
const folderHashes = (dir: string) =>
  Object.fromEntries(fs.readdirSync(dir).map((n) => [n, sha(join(dir, n))]));
const elements = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** The merged tensors must equal the reference safetensors byte for byte. */
async function assertEqualsReference(out: string, reference: string): Promise<void> {
  const ckpt = await openDcp(out);
  const reader = new DcpReader(ckpt);
  const ref = await SafetensorsFile.open(reference);
  try {
    for (const [name, t] of ref.tensors) {
      assert.deepEqual(
        Buffer.from(reader.readElements(name, 0, elements(t.shape))),
        Buffer.from(await ref.read(name)),
        name,
      );
    }
  } finally {
    reader.close();
    await ref.close();
  }
}

/** Every zip record of every item must carry the CRC-32 of its bytes (torch's writer sets them; a merge must keep them true). */
async function assertCrcsValid(dir: string): Promise<void> {
  const ckpt = await openDcp(dir);
  const items = [...ckpt.tensors.values()].flatMap((t) =>
    t.chunks.map((c) => ({
      name: t.name,
      file: c.file,
      range: ckpt.metadata!.storage.get(`${t.name}\u0000${c.offsets.join(",")}`)!,
    })),
  );
  for (const it of items) {
    const fd = fs.openSync(it.file, "r");
    try {
      for (const r of readSegmentRecords(fd, it.file, it.range.offset, it.range.length, it.name)) {
        const b = Buffer.alloc(r.length);
        fs.readSync(fd, b, 0, r.length, r.dataOffset);
        assert.equal(crc32(b) >>> 0, r.crc32, `${it.name}: ${r.name}`);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
}

describe("merging distributed checkpoints", () => {
  it("SMA of the trajectory with f64 accumulation is bit-identical to torch's float64 reference, in the newest input's exact layout", async () => {
    const inputs = ["step-300", "step-100", "step-200"].map((s) => TRAJ + s);
    const before = inputs.map(folderHashes);
    const out = join(tmp, "sma");
    const record = await mergeDcp({ inputs, out, accumulate: "f64", chunkElements: 100, threads: 2 });
    assert.equal(record.order_basis, "tokens");
    assert.deepEqual(
      record.inputs.map((i) => i.tokens),
      [3355443200, 6710886400, 10066329600],
    );
    await assertEqualsReference(out, `${TRAJ}reference-sma.safetensors`);
    // Same files; .metadata byte for byte; BYTE_IO items (step, tokens_seen) are the newest input's.
    assert.deepEqual(fs.readdirSync(out).sort(), [".metadata", "__0_0.distcp", "pma_merge.json"]);
    assert.equal(sha(join(out, ".metadata")), sha(`${TRAJ}step-300/.metadata`));
    assert.equal(
      fs.statSync(join(out, "__0_0.distcp")).size,
      fs.statSync(`${TRAJ}step-300/__0_0.distcp`).size,
    );
    const merged = await openDcp(out);
    const newest = await openDcp(`${TRAJ}step-300`);
    const r1 = new DcpReader(merged);
    const r2 = new DcpReader(newest);
    for (const name of newest.bytesItems.keys())
      assert.deepEqual(r1.readBytesItem(name), r2.readBytesItem(name), name);
    r1.close();
    r2.close();
    await assertCrcsValid(out);
    assert.deepEqual(inputs.map(folderHashes), before, "inputs are never modified");
  });

  it("an input sharded differently (two row-split files) merges by global coordinates to the same bits", async () => {
    // step-200 rewritten as HuggingFaceStorageWriter(save_distributed=True) would: one file per rank, row halves.
    const src = await openDcp(`${TRAJ}step-200`);
    const reader = new DcpReader(src);
    const dir = join(tmp, "resharded", "step-200");
    fs.mkdirSync(dir, { recursive: true });
    for (const rank of [0, 1]) {
      const tensors = [];
      const info: Record<string, { saved_offsets: number[] }> = {};
      for (const t of src.tensors.values()) {
        const rows = t.shape[0]!;
        const half = Math.ceil(rows / 2);
        const [r0, r1] = rank === 0 ? [0, half] : [half, rows];
        const inner = elements(t.shape.slice(1));
        tensors.push({
          name: t.name,
          dtype: t.dtype,
          shape: [r1 - r0, ...t.shape.slice(1)],
          data: reader.readElements(t.name, r0 * inner, (r1 - r0) * inner),
        });
        info[t.name] = { saved_offsets: [r0, ...t.shape.slice(1).map(() => 0)] };
      }
      await writeSafetensors(join(dir, `shard-0000${rank + 1}-model-00001-of-00001.safetensors`), tensors, {
        DCP_SHARDING_INFO: JSON.stringify(info),
      });
    }
    reader.close();
    const out = join(tmp, "resharded-out");
    const notes: string[] = [];
    await mergeDcp({
      inputs: [`${TRAJ}step-100`, dir, `${TRAJ}step-300`],
      out,
      accumulate: "f64",
      keepOrder: true,
      onNote: (n) => notes.push(n),
    });
    assert.match(notes.join("\n"), /sharded differently/);
    await assertEqualsReference(out, `${TRAJ}reference-sma.safetensors`);
  });

  /** A copy of `src` whose float chunks (those `pick` selects) are scaled by `k`, as a later checkpoint of the same run. */
  async function scaledCopy(
    src: string,
    dst: string,
    k: number,
    pick: (name: string) => boolean,
  ): Promise<void> {
    fs.cpSync(src, dst, { recursive: true });
    const ckpt = await openDcp(dst);
    for (const t of ckpt.tensors.values()) {
      if (t.dtype !== "F32" || !pick(t.name)) continue;
      for (const c of t.chunks) {
        const fd = fs.openSync(c.file, "r+");
        const b = Buffer.alloc(c.byteLength);
        fs.readSync(fd, b, 0, b.length, c.dataOffset);
        for (let i = 0; i < b.length; i += 4) b.writeFloatLE(b.readFloatLE(i) * k, i);
        fs.writeSync(fd, b, 0, b.length, c.dataOffset);
        // Keep the copy a valid zip, as a trainer's own save would be.
        const crc = Buffer.alloc(4);
        crc.writeUInt32LE(crc32(b) >>> 0, 0);
        assert.equal(c.record!.length, c.byteLength);
        for (const at of c.record!.crcFields) fs.writeSync(fd, crc, 0, 4, at);
        fs.closeSync(fd);
      }
    }
  }

  /** Values of a tensor as float64. */
  async function values(dir: string, name: string): Promise<Float64Array> {
    const ckpt = await openDcp(dir);
    const r = new DcpReader(ckpt);
    const t = ckpt.tensors.get(name)!;
    const b = r.readElements(name, 0, elements(t.shape));
    r.close();
    return Float64Array.from(new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4));
  }

  for (const optimizer of ["copy", "merge"] as const) {
    it(`two-rank FSDP checkpoint: weights merged, optimizer moments ${optimizer === "copy" ? "copied from the newest" : "merged"} (--optimizer ${optimizer})`, async () => {
      const src = `${TORCH_FIXTURES}dcp/two-rank-sharded`;
      const later = join(tmp, `two-rank-x3-${optimizer}`);
      await scaledCopy(src, later, 3, () => true);
      const out = join(tmp, `two-rank-out-${optimizer}`);
      await mergeDcp({ inputs: [src, later], out, keepOrder: true, accumulate: "f64", optimizer });
      for (const name of [
        "model.embed_tokens.weight",
        "optimizer.state.model.embed_tokens.weight.exp_avg",
        "optimizer.state.model.embed_tokens.weight.exp_avg_sq",
      ]) {
        const a = await values(src, name);
        const got = await values(out, name);
        const factor = name.startsWith("model.") || optimizer === "merge" ? 2 : 3;
        for (let i = 0; i < a.length; i++) assert.equal(got[i], Math.fround(a[i]! * factor), `${name}[${i}]`);
      }
      // step counters are never merged
      assert.deepEqual(
        await values(out, "optimizer.state.model.norm.weight.step"),
        await values(later, "optimizer.state.model.norm.weight.step"),
      );
      await assertCrcsValid(out);
    });
  }

  it("the real Megatron-LM torch_dist checkpoint merges in its own layout, companions copied", async () => {
    const src = `${TORCH_FIXTURES}real/megatron-lm-tp2/ckpt`;
    const later = join(tmp, "megatron-x3");
    await scaledCopy(src, later, 3, () => true);
    const out = join(tmp, "megatron-out");
    await mergeDcp({ inputs: [src, later], out, keepOrder: true, accumulate: "f64" });
    for (const f of ["common.pt", "metadata.json", ".metadata"])
      assert.equal(sha(join(out, f)), sha(join(src, f)), f);
    const a = await values(src, "decoder.layers.self_attention.linear_qkv.weight");
    const got = await values(out, "decoder.layers.self_attention.linear_qkv.weight");
    for (let i = 0; i < a.length; i++) assert.equal(got[i], Math.fround(a[i]! * 2));
    await assertCrcsValid(out);
  });

  it("checkpoints whose shapes or dtypes disagree are refused and nothing is written", async () => {
    const out = join(tmp, "mismatch");
    await assert.rejects(
      mergeDcp({ inputs: [`${TORCH_FIXTURES}dcp/single-rank`, `${TRAJ}step-300`], out }),
      (e: unknown) => isPmaError(e, "CHECKPOINT_MISMATCH") && e.message.includes("aux.bf16_table"),
    );
    assert.equal(fs.existsSync(out), false);
  });

  it("a tensor whose dtype or global shape differs across checkpoints is refused, naming both", async () => {
    const fill = (_box: unknown, _offset: number, into: Uint8Array) => into.fill(0x3c);
    const a = join(tmp, "syn", "step-1");
    const b = join(tmp, "syn", "step-2");
    const c = join(tmp, "syn", "step-3");
    writeSyntheticDcp(a, [{ name: "w", dtype: "F32", shape: [4, 4], fill }], { step: 1 }, 2);
    writeSyntheticDcp(b, [{ name: "w", dtype: "BF16", shape: [4, 4], fill }], { step: 2 }, 2);
    writeSyntheticDcp(c, [{ name: "w", dtype: "F32", shape: [4, 5], fill }], { step: 3 }, 1);
    const out = join(tmp, "syn-out");
    await assert.rejects(
      mergeDcp({ inputs: [a, b], out }),
      (e: unknown) => isPmaError(e, "CHECKPOINT_MISMATCH") && /"w" is F32, but BF16/.test(e.message),
    );
    await assert.rejects(
      mergeDcp({ inputs: [a, c], out }),
      (e: unknown) =>
        isPmaError(e, "CHECKPOINT_MISMATCH") && /"w" has shape \[4, 4\], but \[4, 5\]/.test(e.message),
    );
    assert.equal(fs.existsSync(out), false);
  });

  it("the synthetic writer used by bench:merge writes checkpoints that merge exactly across different rank counts", async () => {
    // Element i of checkpoint k holds k * 1000 + i, written over 2 ranks (older) and 3 ranks (newest).
    const fill = (k: number) => (box: { offsets: number[] }, offset: number, into: Uint8Array) => {
      const f = new Float32Array(into.buffer, into.byteOffset, into.length / 4);
      for (let i = 0; i < f.length; i++) f[i] = k * 1000 + box.offsets[0]! * 8 + offset / 4 + i;
    };
    const a = join(tmp, "ranks", "step-1");
    const b = join(tmp, "ranks", "step-2");
    writeSyntheticDcp(a, [{ name: "w", dtype: "F32", shape: [9, 8], fill: fill(1) }], { step: 1 }, 2);
    writeSyntheticDcp(b, [{ name: "w", dtype: "F32", shape: [9, 8], fill: fill(3) }], { step: 2 }, 3);
    const out = join(tmp, "ranks-out");
    await mergeDcp({ inputs: [a, b], out, accumulate: "f64" });
    assert.deepEqual(fs.readdirSync(out).sort(), [
      ".metadata",
      "__0_0.distcp",
      "__1_0.distcp",
      "__2_0.distcp",
      "pma_merge.json",
    ]);
    const got = await values(out, "w");
    for (let i = 0; i < 72; i++) assert.equal(got[i], 2000 + i);
    await assertCrcsValid(out);
  });

  it("optimizer state is told apart from weights; master weights count as weights", () => {
    assert.equal(dcpTensorRole("model.layers.0.mlp.up_proj.weight", "copy"), "merge");
    assert.equal(dcpTensorRole("optimizer.state.model.norm.weight.exp_avg", "copy"), "copy");
    assert.equal(dcpTensorRole("optimizer.state.model.norm.weight.exp_avg", "merge"), "merge");
    assert.equal(dcpTensorRole("optimizer.state.model.norm.weight.step", "merge"), "copy");
    assert.equal(
      dcpTensorRole("optimizer.state.fp32_param.decoder.layers.mlp.linear_fc1.weight", "copy"),
      "merge",
    );
  });
});
