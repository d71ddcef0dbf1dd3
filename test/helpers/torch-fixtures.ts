import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { DcpReader } from "../../src/formats/dcp/reader.js";

/** The PyTorch fixtures folder (test/fixtures/torch), from the compiled test's location. */
export const TORCH_FIXTURES = fileURLToPath(new URL("../../../test/fixtures/torch/", import.meta.url));

export interface ExpectedTensor {
  name: string;
  dtype: string;
  shape: number[];
  nbytes: number;
  sha256: string;
  chunks?: { offsets: number[]; sizes: number[]; file: string; offset: number; length: number }[];
}

export interface ExpectedFixture {
  fixture: string;
  tensors: ExpectedTensor[];
  bytes_items?: {
    name: string;
    python_type: string;
    value: unknown;
    file: string;
    offset: number;
    length: number;
  }[];
  must_refuse?: boolean;
}

/** expected/<name>.json: tensor names, dtypes, shapes and sha256 of the assembled bytes, recorded by torch. */
export function expectedFixture(name: string): ExpectedFixture {
  return JSON.parse(readFileSync(`${TORCH_FIXTURES}expected/${name}.json`, "utf8")) as ExpectedFixture;
}

/** torch's dtype names as pma's. */
export const TORCH_DTYPE: Record<string, string> = {
  float32: "F32",
  bfloat16: "BF16",
  float16: "F16",
  int64: "I64",
  uint8: "U8",
  float64: "F64",
};

/** sha256 of a whole tensor read through the reader in pieces of `piece` elements (so the streaming path is exercised). */
export function tensorSha256(reader: DcpReader, name: string, piece = 37): string {
  const t = reader.tensor(name);
  const total = t.shape.reduce((a, b) => a * b, 1);
  const h = createHash("sha256");
  for (let s = 0; s < total; s += piece) h.update(reader.readElements(name, s, Math.min(piece, total - s)));
  return h.digest("hex");
}
