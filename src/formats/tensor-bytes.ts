import { dtypeBits, type DType } from "../tensor/dtype.js";

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export type ByteLengthResult = { ok: true; byteLength: number } | { ok: false; reason: string };

/**
 * Bytes occupied by a tensor, or why it has no valid size. Computed from bits per
 * element because sub-byte dtypes (F4, F6_*) only fill whole bytes for some element
 * counts. Every intermediate product is bounded by 2^53 (in the order of the dims, as
 * the reference checks its usize products), so a hostile shape can never yield a size
 * that merely looks right after losing precision. The bound is exact: a product of
 * integers whose true value is below 2^53 is computed exactly, and one at or above it
 * rounds to at least 2^53.
 */
export function tensorByteLength(dtype: DType, shape: readonly number[]): ByteLengthResult {
  let numel = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      return { ok: false, reason: `dimension ${dim} is not a non-negative integer below 2^53` };
    }
    numel *= dim;
    if (numel > MAX_SAFE) {
      return { ok: false, reason: `element count of shape [${shape.join(", ")}] overflows 2^53` };
    }
  }
  const bits = dtypeBits(dtype);
  const rest = numel % 8;
  if ((rest * bits) % 8 !== 0) {
    return {
      ok: false,
      reason: `${numel} elements of ${dtype} (${bits} bits each) do not fill a whole number of bytes`,
    };
  }
  // Split so that numel * bits, which may pass 2^53 when the byte count does not, is never formed.
  const bytes = ((numel - rest) / 8) * bits + (rest * bits) / 8;
  if (bytes > MAX_SAFE) {
    return { ok: false, reason: `byte size of shape [${shape.join(", ")}] overflows 2^53` };
  }
  return { ok: true, byteLength: bytes };
}
