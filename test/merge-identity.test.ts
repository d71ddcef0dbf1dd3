import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { openCheckpointTensors } from "../src/formats/checkpoint-files.js";
import { writeSafetensors, type TensorData } from "../src/formats/safetensors-writer.js";
import { merge } from "../src/merge/merger.js";
import type { MethodSpec } from "../src/merge/methods.js";
import type { FloatDType } from "../src/tensor/dtype.js";
import { representable, rng, tempDir, toBytes } from "./helpers/fixtures.js";

// The sanity check every user tries first: merging N copies of one checkpoint must give
// that checkpoint back, bit for bit, with default settings, whatever the method and dtype.
// Coefficients that sum to 1 only up to float64 rounding (1/3, EMA powers, WSM
// differences) must not show; neither may the sign of zero, subnormals or the largest
// finite values.

const LARGEST: Record<"F32" | "BF16" | "F16", number> = {
  F32: 3.4028234663852886e38,
  BF16: 3.3895313892515355e38,
  F16: 65504,
};
const SMALLEST: Record<"F32" | "BF16" | "F16", number> = { F32: 2 ** -149, BF16: 2 ** -133, F16: 2 ** -24 };

function values(dtype: "F32" | "BF16" | "F16", n: number, seed: number): number[] {
  const r = rng(seed);
  const v = Array.from({ length: n }, () => (r() * 2 - 1) * 2 ** Math.floor(r() * 30 - 15));
  v.splice(0, 8, 0, -0, SMALLEST[dtype], -SMALLEST[dtype], LARGEST[dtype], -LARGEST[dtype], 1 / 3, -0.1);
  return representable(v, dtype);
}

const DTYPES = ["F32", "BF16", "F16"] as const;
// Odd sizes: SIMD tails and chunk boundaries.
const tensors = (): TensorData[] =>
  DTYPES.map((dtype, k) => ({
    name: `layer.${dtype.toLowerCase()}.weight`,
    dtype,
    shape: [37, 53],
    data: toBytes(values(dtype, 37 * 53, 7 + k), dtype),
  }));

const METHODS: MethodSpec[] = [
  { method: "sma" },
  { method: "wma" },
  { method: "ema", alpha: 0.2 },
  { method: "ema", alpha: 0.7 },
  { method: "wsm", decay: "1-sqrt" },
  { method: "wsm", decay: "linear" },
  { method: "wsm", decay: "cosine" },
  { method: "custom", weights: [0.1, 0.2, 0.3, 0.15, 0.05, 0.1, 0.1] },
  { method: "custom", weights: [3, 1, 4, 1, 5, 9, 2] },
];

describe("merging identical checkpoints returns them bit for bit", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  const original = tensors();
  const inputs = (n: number) =>
    Array.from({ length: n }, (_, i) => join(tmp.dir, `run/checkpoint-${(i + 1) * 100}`));
  before(async () => {
    tmp = await tempDir();
    for (const [i, dir] of inputs(7).entries()) {
      await mkdir(dir, { recursive: true });
      await writeSafetensors(join(dir, "model.safetensors"), original);
      await writeFile(
        join(dir, "trainer_state.json"),
        JSON.stringify({
          global_step: (i + 1) * 100,
          num_input_tokens_seen: (i + 1) * 1000,
          log_history: [],
        }),
      );
    }
  });
  after(() => tmp.cleanup());

  async function mismatches(out: string): Promise<Map<FloatDType, number>> {
    const ck = await openCheckpointTensors(out);
    const found = new Map<FloatDType, number>();
    try {
      for (const t of original) {
        const got = await ck.tensors.get(t.name)!.file.read(t.name);
        const size = t.dtype === "F32" ? 4 : 2;
        let bad = 0;
        for (let e = 0; e < got.length; e += size)
          if (Buffer.compare(got.subarray(e, e + size), t.data.subarray(e, e + size)) !== 0) bad++;
        found.set(t.dtype as FloatDType, bad);
      }
    } finally {
      await ck.close();
    }
    return found;
  }

  for (const method of METHODS) {
    for (const n of method.method === "custom" ? [7] : [3, 7]) {
      const label = `${method.method}${method.alpha !== undefined ? ` alpha ${method.alpha}` : ""}${method.decay !== undefined ? ` ${method.decay}` : ""}${method.weights !== undefined ? ` ${method.weights.join(",")}` : ""}`;
      test(`${label}, ${n} copies, default settings: f32, bf16 and f16 tensors come back unchanged`, async () => {
        const out = join(tmp.dir, `out-${label.replace(/[^a-z0-9]+/gi, "-")}-${n}`);
        // Small chunks and two threads: several chunks per tensor, taken by either worker.
        await merge({ inputs: inputs(n), out, method, chunkElements: 333, threads: 2 });
        assert.deepEqual(Object.fromEntries(await mismatches(out)), { F32: 0, BF16: 0, F16: 0 });
      });
    }
  }

  test("float32 accumulation (--accumulate f32) does not have this property for f32 tensors: the default is there for a reason", async () => {
    const out = join(tmp.dir, "out-f32");
    await merge({ inputs: inputs(3), out, accumulate: "f32" });
    const bad = await mismatches(out);
    // 1/3 rounded to f32, times x, three times, rounded at each step: off by an ulp in a good share of values.
    assert.ok(bad.get("F32")! > 37 * 53 * 0.1, `only ${bad.get("F32")} f32 values changed`);
  });
});
