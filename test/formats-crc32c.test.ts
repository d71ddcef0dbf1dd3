import { test } from "node:test";
import assert from "node:assert/strict";
import { crc32c, maskCrc32c, maskedCrc32c } from "../src/formats/crc32c.js";

/** Independent reference: bit-at-a-time CRC-32C straight from the reflected polynomial. */
function bitwiseCrc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** TensorFlow's mask, computed in BigInt so it shares no 32-bit tricks with the library. */
function referenceMask(crc: number): number {
  const c = BigInt(crc);
  const rot = ((c >> 15n) | (c << 17n)) & 0xffffffffn;
  return Number((rot + 0xa282ead8n) & 0xffffffffn);
}

function referenceUnmask(masked: number): number {
  const rot = (BigInt(masked) - 0xa282ead8n) & 0xffffffffn;
  return Number(((rot >> 17n) | (rot << 15n)) & 0xffffffffn);
}

test("CRC-32C matches the published check value and the RFC 3720 (iSCSI) vectors", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

test("CRC-32C agrees with a bitwise reference at every length around the 8-byte slices", () => {
  let seed = 12345;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
  for (let n = 0; n < 70; n++) {
    const bytes = Uint8Array.from({ length: n }, next);
    assert.equal(crc32c(bytes), bitwiseCrc32c(bytes), `length ${n}`);
    // Unaligned views must work too (Buffer pools hand out arbitrary offsets).
    const padded = new Uint8Array(n + 3);
    padded.set(bytes, 3);
    assert.equal(crc32c(padded.subarray(3)), bitwiseCrc32c(bytes), `unaligned length ${n}`);
  }
});

test("a running CRC-32C over pieces equals the CRC of the whole", () => {
  const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7 + 3) & 0xff);
  for (const cut of [0, 1, 7, 8, 9, 500, 999, 1000]) {
    assert.equal(
      crc32c(bytes.subarray(cut), crc32c(bytes.subarray(0, cut))),
      bitwiseCrc32c(bytes),
      `cut ${cut}`,
    );
  }
});

test("masking follows TensorFlow's definition and is invertible", () => {
  for (const crc of [0, 1, 0x80000000, 0xffffffff, 0xe3069283, 0x12345678]) {
    assert.equal(maskCrc32c(crc), referenceMask(crc));
    assert.equal(referenceUnmask(maskCrc32c(crc)), crc);
    assert.notEqual(maskCrc32c(crc), crc);
  }
  const data = new TextEncoder().encode("123456789");
  assert.equal(maskedCrc32c(data), referenceMask(0xe3069283));
});
