import { dtypeBits, type DType } from "../tensor/dtype.js";

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export type ByteLengthResult = { ok: true; byteLength: number } | { ok: false; reason: string };

/**
 * Bytes occupied by a tensor, or why it has no valid size. Computed from bits per
 * element because sub-byte dtypes (F4, F6_*) only fill whole bytes for some element
 * counts. Every intermediate product is bounded by 2^53 (in the order of the dims, as
 * the reference checks its usize products), so a hostile shape can never yield a size
 * that merely looks right after losing precision.
 */
export function tensorByteLength(dtype: DType, shape: readonly number[]): ByteLengthResult {
  let numel = 1n;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      return { ok: false, reason: `dimension ${dim} is not a non-negative integer below 2^53` };
    }
    numel *= BigInt(dim);
    if (numel > MAX_SAFE) {
      return { ok: false, reason: `element count of shape [${shape.join(", ")}] overflows 2^53` };
    }
  }
  const bits = numel * BigInt(dtypeBits(dtype));
  if (bits % 8n !== 0n) {
    return {
      ok: false,
      reason: `${numel} elements of ${dtype} (${dtypeBits(dtype)} bits each) do not fill a whole number of bytes`,
    };
  }
  const bytes = bits / 8n;
  if (bytes > MAX_SAFE) {
    return { ok: false, reason: `byte size of shape [${shape.join(", ")}] overflows 2^53` };
  }
  return { ok: true, byteLength: Number(bytes) };
}
