import * as assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { openDcp, readBytesValue } from "../src/formats/dcp/open.js";
import { toJson } from "../src/formats/dcp/pickle-values.js";
import { dcpProgress } from "../src/formats/dcp/progress.js";
import { DcpReader } from "../src/formats/dcp/reader.js";
import { tempDir } from "./helpers/fixtures.js";
import { expectedFixture, tensorSha256, TORCH_DTYPE, TORCH_FIXTURES } from "./helpers/torch-fixtures.js";

/** Every DCP fixture torch can read, with its expected file (written by torch itself). */
const READABLE: [string, string, string][] = [
  ["dcp/single-rank", "dcp.single-rank", "torch-save"],
  ["dcp/two-rank-sharded", "dcp.two-rank-sharded", "torch-save"],
  ["dcp/trajectory/step-100", "dcp.trajectory.step-100", "torch-save"],
  ["dcp/trajectory/step-300", "dcp.trajectory.step-300", "torch-save"],
  ["dcp/safetensors-format/filesystem-writer", "dcp.safetensors-format.filesystem-writer", "safetensors"],
  ["dcp/safetensors-format/hf-storage-two-rank", "dcp.safetensors-format.hf-storage-two-rank", "hf-storage"],
  ["real/megatron-lm-tp2/ckpt", "real.megatron-lm-tp2", "torch-save"],
  ["real/lightning-fsdp/ckpt", "real.lightning-fsdp", "torch-save"],
];

let scratch = "";
let cleanup: () => Promise<void> = async () => {};
before(async () => ({ dir: scratch, cleanup } = await tempDir("pma-dcp-read-")));
after(() => cleanup());

describe("DCP reading against the torch fixtures", () => {
  for (const [fixture, expectedName, layout] of READABLE) {
    it(`${fixture}: every tensor assembles to torch's sha256, every BYTE_IO value matches`, async () => {
      const ckpt = await openDcp(`${TORCH_FIXTURES}${fixture}`);
      const expected = expectedFixture(expectedName);
      assert.equal(ckpt.layout, layout);
      assert.deepEqual([...ckpt.tensors.keys()].sort(), expected.tensors.map((t) => t.name).sort());
      const reader = new DcpReader(ckpt);
      try {
        for (const e of expected.tensors) {
          const t = ckpt.tensors.get(e.name)!;
          assert.equal(t.dtype, TORCH_DTYPE[e.dtype], e.name);
          assert.deepEqual(t.shape, e.shape, e.name);
          if (e.chunks)
            assert.deepEqual(
              t.chunks.map((c) => [c.offsets, c.sizes, path.basename(c.file)]),
              e.chunks.map((c) => [c.offsets, c.sizes, c.file]),
              e.name,
            );
          assert.equal(tensorSha256(reader, e.name), e.sha256, e.name);
        }
      } finally {
        reader.close();
      }
      assert.deepEqual(
        [...ckpt.bytesItems.keys()].sort(),
        (expected.bytes_items ?? []).map((b) => b.name).sort(),
      );
      for (const b of expected.bytes_items ?? [])
        assert.deepEqual(toJson(readBytesValue(ckpt, b.name)), b.value, b.name);
    });
  }

  it("values above 2^31 and 2^53 in BYTE_IO items keep their exact value", async () => {
    const ckpt = await openDcp(`${TORCH_FIXTURES}dcp/single-rank`);
    assert.equal(readBytesValue(ckpt, "train_state.tokens_seen"), 41406169088);
  });
});

describe("Megatron-LM common.pt", () => {
  it("gives the iteration and derived tokens (consumed_train_samples x seq_length), reading argparse.Namespace as inert data", async () => {
    const dir = path.join(scratch, "megatron-common");
    await fs.cp(`${TORCH_FIXTURES}real/megatron-lm-tp2/ckpt`, dir, { recursive: true });
    // The real checkpoint's common.pt is {}: no progress from it, the folder name gives none either.
    assert.deepEqual(dcpProgress(await openDcp(dir)), {});
    // A common.pt with Megatron's args (the legacy fixture holds the same structure: args Namespace, iteration).
    await fs.copyFile(
      `${TORCH_FIXTURES}torch-save/megatron-legacy/iter_0000100/mp_rank_00/model_optim_rng.pt`,
      path.join(dir, "common.pt"),
    );
    const p = dcpProgress(await openDcp(dir));
    assert.equal(p.step, 100);
    assert.equal(p.tokens, 1600 * 64);
    assert.match(p.tokensFrom!, /consumed_train_samples x args\.seq_length \(derived\)/);
  });
});

const refused =
  (code: string, ...parts: string[]) =>
  (e: unknown) =>
    isPmaError(e) && e.code === code && parts.every((p) => e.message.includes(p));

describe("hostile distributed checkpoints", () => {
  it("a .metadata that reaches posix.system is refused, naming the global and the file", async () => {
    const dir = `${TORCH_FIXTURES}dcp/hostile-metadata`;
    await assert.rejects(
      openDcp(dir),
      refused("METADATA_INVALID", "posix.system", path.join(dir, ".metadata")),
    );
  });

  it("a BYTE_IO item whose pickle calls posix.system is refused on open", async () => {
    const dir = `${TORCH_FIXTURES}dcp/hostile-byteio`;
    await assert.rejects(
      openDcp(dir),
      refused("METADATA_INVALID", "posix.system", path.join(dir, "__0_0.distcp"), '"step"'),
    );
  });

  /** A copy of the single-rank fixture with its .metadata replaced by `patch` applied to the original bytes. */
  async function patched(
    name: string,
    patch: (meta: Buffer) => Buffer,
    dataPatch?: (data: Buffer) => Buffer,
  ): Promise<string> {
    const dir = path.join(scratch, name);
    await fs.mkdir(dir);
    const src = `${TORCH_FIXTURES}dcp/single-rank`;
    await fs.writeFile(path.join(dir, ".metadata"), patch(await fs.readFile(path.join(src, ".metadata"))));
    const data = await fs.readFile(path.join(src, "__0_0.distcp"));
    await fs.writeFile(path.join(dir, "__0_0.distcp"), dataPatch ? dataPatch(data) : data);
    return dir;
  }
  /** Replaces one pickled short string by another of the same length (so no frame or length changes). */
  const swap = (from: string, to: string) => (b: Buffer) => {
    assert.equal(from.length, to.length);
    const at = b.indexOf(Buffer.from(from, "latin1"));
    assert.ok(at >= 0, from);
    const out = Buffer.from(b);
    out.write(to, at, "latin1");
    return out;
  };

  it("a relative_path leading outside the folder is refused", async () => {
    const dir = await patched("outside", swap("__0_0.distcp", "../__0_0.dis"));
    await assert.rejects(openDcp(dir), refused("PATH_UNSAFE", '"../__0_0.dis"', ".metadata"));
  });

  it("an absolute relative_path is refused", async () => {
    const dir = await patched("absolute", swap("__0_0.distcp", "/etc/passwd0"));
    await assert.rejects(openDcp(dir), refused("PATH_UNSAFE", "/etc/passwd0"));
  });

  it("items past the end of the data file are refused", async () => {
    const dir = await patched(
      "truncated",
      (b) => b,
      (d) => d.subarray(0, d.length - 3000),
    );
    await assert.rejects(
      openDcp(dir),
      (e: unknown) => isPmaError(e, "METADATA_INVALID") && /past its end/.test(e.message),
    );
  });

  it("a dtype in .metadata that disagrees with the stored chunk is refused", async () => {
    const dir = await patched(
      "dtype",
      swap("torch\u0094\u008c\u0007float32", "torch\u0094\u008c\u0007float16"),
    );
    await assert.rejects(
      openDcp(dir),
      (e: unknown) =>
        isPmaError(e, "METADATA_INVALID") && /stored as F32, but \.metadata says F16/.test(e.message),
    );
  });
});
