import { PmaError } from "../common/errors.js";

/**
 * Bulk conversions write into caller-owned buffers so that a streaming merge can reuse
 * them; a length mismatch there is a bug in the caller, caught before any write.
 */
export function requireLength(actual: number, expected: number, what: string): void {
  if (actual !== expected) {
    throw new PmaError(
      "INTERNAL",
      `${what}: buffer holds ${actual} elements but ${expected} are needed; this is a bug in the caller, please report it`,
    );
  }
}
