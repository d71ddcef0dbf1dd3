import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bf16ToNumber, numberToBf16 } from "../../src/tensor/bf16.js";
import { f16ToNumber, numberToF16 } from "../../src/tensor/f16.js";
import type { FloatDType } from "../../src/tensor/dtype.js";

/** A seeded PRNG (mulberry32): tests must be reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function tempDir(prefix = "pma-test-"): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Values representable in `dtype`, so a checkpoint round-trips them exactly. */
export function representable(values: number[], dtype: FloatDType): number[] {
  switch (dtype) {
    case "BF16":
      return values.map((v) => bf16ToNumber(numberToBf16(v)));
    case "F16":
      return values.map((v) => f16ToNumber(numberToF16(v)));
    case "F32":
      return values.map((v) => Math.fround(v));
    case "F64":
      return values;
  }
}

/** Little-endian bytes of `values` in `dtype` (values must be representable). */
export function toBytes(values: number[], dtype: FloatDType): Uint8Array {
  const size = dtype === "F64" ? 8 : dtype === "F32" ? 4 : 2;
  const buf = Buffer.alloc(values.length * size);
  values.forEach((v, i) => {
    if (dtype === "F64") buf.writeDoubleLE(v, i * 8);
    else if (dtype === "F32") buf.writeFloatLE(v, i * 4);
    else buf.writeUInt16LE(dtype === "BF16" ? numberToBf16(v) : numberToF16(v), i * 2);
  });
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Values of little-endian bytes in `dtype`. */
export function fromBytes(bytes: Uint8Array, dtype: FloatDType): number[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = dtype === "F64" ? 8 : dtype === "F32" ? 4 : 2;
  const out: number[] = [];
  for (let i = 0; i < bytes.length / size; i++) {
    if (dtype === "F64") out.push(buf.readDoubleLE(i * 8));
    else if (dtype === "F32") out.push(buf.readFloatLE(i * 4));
    else
      out.push(
        dtype === "BF16" ? bf16ToNumber(buf.readUInt16LE(i * 2)) : f16ToNumber(buf.readUInt16LE(i * 2)),
      );
  }
  return out;
}

/** sha256 of every file below `dir`, to prove inputs were not touched. */
export async function treeHash(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, rel: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p, `${rel}${e.name}/`);
      else
        out[`${rel}${e.name}`] = createHash("sha256")
          .update(await readFile(p))
          .digest("hex");
    }
  };
  if ((await stat(dir)).isDirectory()) await walk(dir, "");
  return out;
}
