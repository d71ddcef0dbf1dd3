import * as assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { openCheckpointTensors } from "../src/formats/checkpoint-files.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { writeSafetensors } from "../src/formats/safetensors-writer.js";
import { merge } from "../src/merge/merger.js";
import { rng, tempDir } from "./helpers/fixtures.js";
import { expectedFixture, TORCH_DTYPE, TORCH_FIXTURES } from "./helpers/torch-fixtures.js";

/** torch.save fixtures pma reads, with the expected file torch wrote for each. */
const READABLE: [string, string][] = [
  ["torch-save/hf-f32", "torch-save.hf-f32"],
  ["torch-save/hf-bf16", "torch-save.hf-bf16"],
  ["torch-save/hf-sharded", "torch-save.hf-sharded"],
  ["torch-save/torch-1.13", "torch-save.torch-1.13"],
];

let scratch = "";
let cleanup: () => Promise<void> = async () => {};
before(async () => ({ dir: scratch, cleanup } = await tempDir("pma-torch-save-")));
after(() => cleanup());

async function refusal(p: string): Promise<{ code: string; message: string; file?: string }> {
  try {
    const ck = await openCheckpointTensors(p);
    await ck.close();
  } catch (e) {
    assert.ok(isPmaError(e), `expected pma's own error, got ${String(e)}`);
    return { code: e.code, message: e.message, ...(e.file !== undefined ? { file: e.file } : {}) };
  }
  assert.fail(`${p} was read but must be refused`);
}

describe("torch.save archives against the torch fixtures", () => {
  for (const [fixture, expectedName] of READABLE) {
    it(`${fixture}: names, dtypes, shapes and sha256 of every tensor match torch's`, async () => {
      const expected = expectedFixture(expectedName);
      const ck = await openCheckpointTensors(`${TORCH_FIXTURES}${fixture}`);
      try {
        assert.deepEqual([...ck.tensors.keys()].sort(), expected.tensors.map((t) => t.name).sort());
        for (const e of expected.tensors) {
          const t = ck.tensors.get(e.name)!;
          assert.equal(t.dtype, TORCH_DTYPE[e.dtype], e.name);
          assert.deepEqual(t.shape, e.shape, e.name);
          assert.equal(t.byteLength, e.nbytes, e.name);
          const bytes = await t.file.read(e.name);
          assert.equal(createHash("sha256").update(bytes).digest("hex"), e.sha256, e.name);
        }
      } finally {
        await ck.close();
      }
    });
  }

  it("the pre-1.6 non-zip format is refused with a message that says what it is and what to do", async () => {
    const r = await refusal(`${TORCH_FIXTURES}torch-save/legacy-non-zip`);
    assert.equal(r.code, "FORMAT_UNSUPPORTED");
    assert.match(r.message, /pre-1\.6 \(non-zip\)/);
    assert.match(r.message, /legacy-non-zip\/pytorch_model\.bin/);
  });

  it("a Megatron-LM legacy iteration folder is refused naming its format and the way out", async () => {
    const r = await refusal(`${TORCH_FIXTURES}torch-save/megatron-legacy/iter_0000100`);
    assert.equal(r.code, "FORMAT_UNSUPPORTED");
    assert.match(r.message, /Megatron-LM legacy checkpoint \(mp_rank_00\/model_optim_rng\.pt/);
    assert.match(r.message, /--ckpt-format torch_dist/);
    assert.match(r.file ?? "", /iter_0000100$/);
    // Its parent holds no weights at all: the message lists every layout pma reads.
    const parent = await refusal(`${TORCH_FIXTURES}torch-save/megatron-legacy`);
    assert.match(parent.message, /pytorch_model\.bin, pytorch_model\.bin\.index\.json with its shards/);
  });

  it("a tensor stored with column-major strides is refused naming the tensor, not read wrongly", async () => {
    const r = await refusal(`${TORCH_FIXTURES}torch-save/shared-storage`);
    assert.equal(r.code, "FORMAT_UNSUPPORTED");
    assert.match(r.message, /model\.layers\.1\.mlp\.down_proj\.weight/);
    assert.match(r.message, /strides \[1,16\]/);
  });

  it("the hostile pickle is refused naming its global, and nothing runs", async () => {
    const r = await refusal(`${TORCH_FIXTURES}torch-save/hostile`);
    assert.equal(r.code, "METADATA_INVALID");
    assert.match(r.message, /"os\.system"/);
    assert.match(r.file ?? "", /hostile\/pytorch_model\.bin$/);
  });

  it("a compressed entry, a truncated archive and a lying central directory are refused", async () => {
    const good = await fs.readFile(`${TORCH_FIXTURES}torch-save/hf-f32/pytorch_model.bin`);
    const cases: [string, Uint8Array][] = [];
    // Compression method of the first central-directory record set to deflate (8).
    const compressed = Buffer.from(good);
    const central = compressed.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    compressed.writeUInt16LE(8, central + 10);
    cases.push(["compressed", compressed]);
    cases.push(["truncated", good.subarray(0, good.length - 100)]);
    // The central directory claims the first record is larger than the whole file.
    const lying = Buffer.from(good);
    lying.writeUInt32LE(good.length * 2, central + 20);
    lying.writeUInt32LE(good.length * 2, central + 24);
    cases.push(["lying", lying]);
    for (const [name, bytes] of cases) {
      const dir = path.join(scratch, `bomb-${name}`);
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(path.join(dir, "pytorch_model.bin"), bytes);
      const r = await refusal(dir);
      assert.ok(
        ["METADATA_INVALID", "FORMAT_UNSUPPORTED"].includes(r.code),
        `${name}: ${r.code} ${r.message}`,
      );
      assert.match(r.message, new RegExp(`bomb-${name}/pytorch_model\\.bin`), name);
    }
  });
});

describe("merging torch.save checkpoints", () => {
  it("a .bin checkpoint merged with a safetensors one equals the float64 reference, written as safetensors", async () => {
    const bin = `${TORCH_FIXTURES}torch-save/hf-f32`;
    const ref = await openCheckpointTensors(bin);
    const r = rng(7);
    const a = new Map<string, Float32Array>();
    const b = new Map<string, Float32Array>();
    const shapes = new Map<string, number[]>();
    try {
      for (const t of ref.tensors.values()) {
        const bytes = await t.file.read(t.name);
        shapes.set(t.name, t.shape);
        a.set(
          t.name,
          new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)),
        );
        b.set(
          t.name,
          Float32Array.from({ length: t.byteLength / 4 }, () => (r() - 0.5) * 0.1),
        );
      }
    } finally {
      await ref.close();
    }
    const other = path.join(scratch, "checkpoint-200");
    await fs.mkdir(other, { recursive: true });
    await writeSafetensors(
      path.join(other, "model.safetensors"),
      [...b].map(([name, v]) => ({
        name,
        dtype: "F32" as const,
        shape: shapes.get(name)!,
        data: new Uint8Array(v.buffer),
      })),
    );
    const binCopy = path.join(scratch, "checkpoint-100");
    await fs.cp(bin, binCopy, { recursive: true });
    const out = path.join(scratch, "merged");
    await merge({ inputs: [binCopy, other], out });
    const merged = await SafetensorsFile.open(path.join(out, "model.safetensors"));
    try {
      for (const [name, x] of a) {
        const y = b.get(name)!;
        const got = new Float32Array((await merged.read(name)).slice().buffer);
        for (let i = 0; i < x.length; i++) {
          // float64: 0.5 x + 0.5 y is exact, then rounded once to float32.
          assert.equal(got[i], Math.fround(0.5 * x[i]! + 0.5 * y[i]!), `${name}[${i}]`);
        }
      }
    } finally {
      await merged.close();
    }
  });

  it("identical .bin checkpoints (single and sharded) merge to torch's bytes exactly", async () => {
    const out = path.join(scratch, "identity");
    const inputs = ["hf-f32", "torch-1.13", "hf-sharded"].map((d, i) =>
      path.join(scratch, `checkpoint-${(i + 1) * 1000}`),
    );
    for (const [i, d] of ["hf-f32", "torch-1.13", "hf-sharded"].entries())
      await fs.cp(`${TORCH_FIXTURES}torch-save/${d}`, inputs[i]!, { recursive: true });
    await merge({ inputs, out });
    const expected = expectedFixture("torch-save.hf-f32");
    const merged = await SafetensorsFile.open(path.join(out, "model.safetensors"));
    try {
      for (const e of expected.tensors)
        assert.equal(
          createHash("sha256")
            .update(await merged.read(e.name))
            .digest("hex"),
          e.sha256,
          e.name,
        );
    } finally {
      await merged.close();
    }
  });
});

describe("pma convert --to safetensors for torch.save folders", () => {
  for (const [fixture, expectedName] of READABLE.filter(([f]) => f !== "torch-save/torch-1.13")) {
    it(`${fixture}: every tensor's bytes equal torch's, config copied, the input untouched`, async () => {
      const { convertTorchSaveToSafetensors, isTorchSaveFolder } =
        await import("../src/convert/torch-save-to-safetensors.js");
      const input = `${TORCH_FIXTURES}${fixture}`;
      assert.ok(isTorchSaveFolder(input));
      const before = await fs.readdir(input);
      const out = path.join(scratch, `convert-${path.basename(fixture)}`);
      const r = await convertTorchSaveToSafetensors(input, { out });
      const expected = expectedFixture(expectedName);
      assert.equal(r.tensors, expected.tensors.length);
      const ck = await openCheckpointTensors(out);
      try {
        for (const e of expected.tensors) {
          const t = ck.tensors.get(e.name)!;
          assert.equal(t.dtype, TORCH_DTYPE[e.dtype], e.name);
          const bytes = await t.file.read(e.name);
          assert.equal(createHash("sha256").update(bytes).digest("hex"), e.sha256, e.name);
        }
      } finally {
        await ck.close();
      }
      assert.deepEqual(
        JSON.parse(await fs.readFile(path.join(out, "config.json"), "utf8")),
        JSON.parse(await fs.readFile(path.join(input, "config.json"), "utf8")),
      );
      assert.deepEqual(await fs.readdir(input), before);
      assert.ok(!isTorchSaveFolder(out), "the output is a safetensors folder");
    });
  }
});
