import * as assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { isPmaError, type PmaErrorCode } from "../src/common/errors.js";

/** A fresh directory under the OS temp dir, and a way to remove it. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pma-st-"));
  return { dir, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}

/**
 * Builds a safetensors file by hand from the format's definition: u64 little-endian
 * header length, the header bytes, then the data. `declaredLength` lets a test lie
 * about N.
 */
export function rawSafetensors(
  header: string | Uint8Array,
  data: number | Uint8Array,
  declaredLength?: bigint,
): Uint8Array {
  const h = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const d = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  let n = declaredLength ?? BigInt(h.length);
  for (let i = 0; i < 8; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

/** Deterministic bytes (xorshift32), so failures reproduce. */
export function patternBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Asserts that `action` fails with a PmaError of `code` whose message names `file`. */
export async function rejectsWith(
  action: () => Promise<unknown>,
  code: PmaErrorCode,
  file: string,
  mentions: string[] = [],
): Promise<void> {
  let caught: unknown = null;
  try {
    await action();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== null, `expected a ${code} error, but the call succeeded`);
  assert.ok(isPmaError(caught), `expected a PmaError, got ${String(caught)}`);
  assert.equal(caught.code, code, `wrong code; message: ${caught.message}`);
  assert.ok(caught.message.includes(file), `message does not name ${file}: ${caught.message}`);
  for (const m of mentions)
    assert.ok(caught.message.includes(m), `message does not mention ${m}: ${caught.message}`);
}
