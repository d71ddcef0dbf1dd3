import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { openCheckpointTensors } from "../src/formats/checkpoint-files.js";

/**
 * The baseline `pma merge` is measured against: what most averaging scripts do (fairseq
 * average_checkpoints, OLMo's average script): load every checkpoint fully into memory,
 * decode to f32, average, write. Usage: node merge-baseline.js OUT CKPT...
 */
const [out, ...inputs] = process.argv.slice(2);
if (out === undefined || inputs.length === 0) throw new Error("usage: merge-baseline OUT CKPT...");
const headers = [];
for (const dir of inputs) {
  const ck = await openCheckpointTensors(dir);
  headers.push(ck);
}
const files = inputs.map((dir) => readFileSync(join(dir, "model.safetensors")));
const first = headers[0]!;
const sums = new Map<string, Float32Array>();
const c = 1 / inputs.length;
const u32 = new Uint32Array(1);
const f32 = new Float32Array(u32.buffer);
for (const [k, ck] of headers.entries()) {
  const bytes = files[k]!;
  for (const t of ck.tensors.values()) {
    const n = t.byteLength / 2;
    let acc = sums.get(t.name);
    if (acc === undefined) sums.set(t.name, (acc = new Float32Array(n)));
    const src = new Uint16Array(bytes.buffer, bytes.byteOffset + t.fileOffset, n);
    for (let i = 0; i < n; i++) {
      u32[0] = src[i]! << 16;
      acc[i]! += c * f32[0]!;
    }
  }
}
// Truncating f32 -> bf16 is what a naive script does; it is not what we time against for
// accuracy, only for speed and memory.
const outBytes = Buffer.alloc(files[0]!.length);
const firstFile = first.files[0]!;
if (!(firstFile instanceof SafetensorsFile))
  throw new Error("the baseline reads safetensors checkpoints only");
files[0]!.copy(outBytes, 0, 0, firstFile.dataStart);
for (const t of first.tensors.values()) {
  const acc = sums.get(t.name)!;
  const dst = new Uint16Array(outBytes.buffer, outBytes.byteOffset + t.fileOffset, acc.length);
  for (let i = 0; i < acc.length; i++) {
    f32[0] = acc[i]!;
    dst[i] = u32[0]! >>> 16;
  }
}
writeFileSync(out, outBytes);
for (const ck of headers) await ck.close();
