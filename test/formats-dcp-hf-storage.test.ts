import * as assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isShardedHfStorage, openHfStorage } from "../src/formats/dcp/hf-storage.js";
import { DcpReader } from "../src/formats/dcp/reader.js";
import { expectedFixture, tensorSha256, TORCH_DTYPE, TORCH_FIXTURES } from "./helpers/torch-fixtures.js";

const TWO_RANK = `${TORCH_FIXTURES}dcp/safetensors-format/hf-storage-two-rank`;

describe("HuggingFaceStorageWriter checkpoints (DCP_SHARDING_INFO)", () => {
  it("the two-rank folder assembles to the tensors torch recorded", async () => {
    assert.equal(await isShardedHfStorage(TWO_RANK), true);
    const ckpt = await openHfStorage(TWO_RANK);
    const expected = expectedFixture("dcp.safetensors-format.hf-storage-two-rank");
    assert.deepEqual([...ckpt.tensors.keys()].sort(), expected.tensors.map((t) => t.name).sort());
    const reader = new DcpReader(ckpt);
    try {
      for (const e of expected.tensors) {
        const t = ckpt.tensors.get(e.name)!;
        assert.equal(t.dtype, TORCH_DTYPE[e.dtype], e.name);
        assert.deepEqual(t.shape, e.shape, e.name);
        assert.equal(t.chunks.length, 2, e.name);
        assert.equal(tensorSha256(reader, e.name), e.sha256, e.name);
      }
    } finally {
      reader.close();
    }
  });

  it("a plain Hugging Face folder written through the same writer is not taken for a sharded one", async () => {
    assert.equal(await isShardedHfStorage(`${TORCH_FIXTURES}dcp/safetensors-format/hf-storage`), false);
  });
});
