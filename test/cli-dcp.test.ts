import * as assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { tempDir } from "./helpers/fixtures.js";
import { expectedFixture, TORCH_DTYPE, TORCH_FIXTURES } from "./helpers/torch-fixtures.js";

const PMA = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const run = promisify(execFile);
let tmp = "";
let cleanup: () => Promise<void> = async () => {};
before(async () => ({ dir: tmp, cleanup } = await tempDir("pma-dcp-cli-")));
after(() => cleanup());

describe("pma convert / inspect of distributed checkpoints", () => {
  it("convert --to safetensors writes the two-rank checkpoint's model tensors with torch's hashes, optimizer state left out", async () => {
    const out = join(tmp, "two-rank-hf");
    const { stdout } = await run(process.execPath, [
      PMA,
      "convert",
      `${TORCH_FIXTURES}dcp/two-rank-sharded`,
      "--to",
      "safetensors",
      "--out",
      out,
      "--json",
    ]);
    const r = JSON.parse(stdout) as { tensors: number; skippedTensors: number; skippedItems: string[] };
    assert.equal(r.tensors, 21);
    assert.equal(r.skippedTensors, 63);
    const f = await SafetensorsFile.open(join(out, "model.safetensors"));
    const expected = expectedFixture("dcp.two-rank-sharded").tensors.filter(
      (t) => !t.name.startsWith("optimizer."),
    );
    assert.deepEqual([...f.tensors.keys()].sort(), expected.map((t) => t.name).sort());
    for (const e of expected) {
      const t = f.tensors.get(e.name)!;
      assert.equal(t.dtype, TORCH_DTYPE[e.dtype]);
      assert.deepEqual(t.shape, e.shape);
      assert.equal(
        createHash("sha256")
          .update(await f.read(e.name))
          .digest("hex"),
        e.sha256,
        e.name,
      );
    }
    await f.close();
  });

  it("inspect shows the layout, chunks, non-tensor values and progress; --stats streams every tensor", async () => {
    const { stdout } = await run(process.execPath, [
      PMA,
      "inspect",
      `${TORCH_FIXTURES}real/megatron-lm-tp2/ckpt`,
      "--stats",
    ]);
    assert.match(stdout, /distributed checkpoint \(torch-save layout, 43 chunks\)/);
    assert.match(stdout, /decoder\.layers\.self_attention\.linear_qkv\.weight\s+F32\s+\[2, 36, 12\]/);
    const json = JSON.parse(
      (await run(process.execPath, [PMA, "inspect", `${TORCH_FIXTURES}dcp/single-rank`, "--json"])).stdout,
    ) as { format: string; dcp: { items: Record<string, unknown>; tokens: number } };
    assert.equal(json.format, "dcp");
    assert.equal(json.dcp.tokens, 41406169088);
    assert.deepEqual(json.dcp.items["data_files"], ["shard-000.bin", "shard-001.bin"]);
  });

  it("a hostile checkpoint is refused with exit 1 and pma's message, no stack trace", async () => {
    await assert.rejects(
      run(process.execPath, [PMA, "inspect", `${TORCH_FIXTURES}dcp/hostile-metadata`]),
      (e: { code?: number; stderr?: string }) => {
        assert.equal(e.code, 1);
        assert.match(e.stderr ?? "", /posix\.system/);
        assert.doesNotMatch(e.stderr ?? "", /\n\s+at /);
        return true;
      },
    );
  });
});
