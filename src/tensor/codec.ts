/**
 * Raw little-endian tensor bytes (safetensors, GGUF) <-> float arrays the merge can do
 * arithmetic on. Callers own every buffer, so a streaming merge allocates once and
 * converts chunk after chunk. Narrowing rounds to nearest, ties to even; widening is
 * exact. The caller picks the array type: decoding F64 into a Float32Array rounds, and
 * that choice belongs to the caller, not to this module.
 */
import { PmaError } from "../common/errors.js";
import { decodeBf16, encodeBf16 } from "./bf16.js";
import { requireLength } from "./check.js";
import { dtypeBits, type FloatDType } from "./dtype.js";
import { decodeF16, encodeF16 } from "./f16.js";

export type FloatArray = Float32Array | Float64Array;

/** Bytes per element of a float dtype. */
export function floatDTypeBytes(dtype: FloatDType): 2 | 4 | 8 {
  return (dtypeBits(dtype) / 8) as 2 | 4 | 8;
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndianHost(): void {
  // Typed-array views read in host byte order and every format pma handles stores
  // little-endian; a big-endian host would need a byte-swapping path nobody tests.
  if (!HOST_IS_LITTLE_ENDIAN) {
    throw new PmaError(
      "PLATFORM_UNSUPPORTED",
      "tensor data is little-endian and this host is big-endian; run pma on a little-endian machine (x86-64, arm64)",
    );
  }
}

/** A typed view of `bytes`, copying first when its offset does not allow a direct view. */
function view<T>(
  bytes: Uint8Array,
  size: number,
  make: (buffer: ArrayBufferLike, offset: number, length: number) => T,
): T {
  const n = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) return make(bytes.buffer, bytes.byteOffset, n);
  // new Uint8Array(typedArray) always copies (Buffer#slice would not).
  return make(new Uint8Array(bytes).buffer, 0, n);
}

/** Decodes `out.length` elements of `dtype` from `bytes` (exactly out.length * size bytes). */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDType, out: FloatArray): void {
  requireLittleEndianHost();
  const size = floatDTypeBytes(dtype);
  requireLength(bytes.byteLength, out.length * size, `decodeFloats(${dtype}) bytes`);
  switch (dtype) {
    case "BF16":
      return decodeBf16(
        view(bytes, 2, (b, o, n) => new Uint16Array(b, o, n)),
        out,
      );
    case "F16":
      return decodeF16(
        view(bytes, 2, (b, o, n) => new Uint16Array(b, o, n)),
        out,
      );
    case "F32":
      return out.set(view(bytes, 4, (b, o, n) => new Float32Array(b, o, n)));
    case "F64":
      return out.set(view(bytes, 8, (b, o, n) => new Float64Array(b, o, n)));
  }
}

/** Encodes `values` as `dtype` into `out` (exactly values.length * size bytes). */
export function encodeFloats(values: FloatArray, dtype: FloatDType, out: Uint8Array): void {
  requireLittleEndianHost();
  const size = floatDTypeBytes(dtype);
  requireLength(out.byteLength, values.length * size, `encodeFloats(${dtype}) bytes`);
  const aligned = out.byteOffset % size === 0;
  // An unaligned destination gets the result through an aligned temporary.
  const target = aligned ? out : new Uint8Array(out.byteLength);
  const n = values.length;
  switch (dtype) {
    case "BF16":
      encodeBf16(values, new Uint16Array(target.buffer, target.byteOffset, n));
      break;
    case "F16":
      encodeF16(values, new Uint16Array(target.buffer, target.byteOffset, n));
      break;
    case "F32":
      new Float32Array(target.buffer, target.byteOffset, n).set(values);
      break;
    case "F64":
      new Float64Array(target.buffer, target.byteOffset, n).set(values);
      break;
  }
  if (!aligned) out.set(target);
}
