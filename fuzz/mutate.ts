/**
 * Input mutations in the style of libFuzzer's MutationDispatcher: bit and byte changes,
 * boundary integers written little-endian (the counts and lengths of binary headers),
 * boundary numbers written as text (the counts and offsets of JSON headers and logs),
 * dictionary tokens of the format, chunk insert/delete/copy, and crossover with another
 * corpus entry. One to five are stacked per execution.
 */

import { mutateJsonOrLine } from "./mutate-json.js";

/** A seeded PRNG (xoshiro128**, seeded by splitmix32): runs replay from their seed. */
export class Rng {
  private readonly s: Uint32Array;

  constructor(seed: number) {
    this.s = new Uint32Array(4);
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  u32(): number {
    const s = this.s;
    const rotl = (v: number, k: number) => (v << k) | (v >>> (32 - k));
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    // From the high bits: a modulus of the low bits of a generator is its weakest part.
    return n <= 0 ? 0 : Math.floor((this.u32() / 4294967296) * n);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.below(xs.length)]!;
  }
}

const INTERESTING_U64: readonly bigint[] = [
  0n,
  1n,
  2n,
  7n,
  8n,
  16n,
  32n,
  63n,
  64n,
  127n,
  128n,
  255n,
  256n,
  0x7fffn,
  0x8000n,
  0xffffn,
  0x10000n,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x100000000n,
  100_000_000n,
  100_000_001n,
  1n << 30n,
  (1n << 30n) + 1n,
  (1n << 53n) - 1n,
  1n << 53n,
  (1n << 53n) + 1n,
  1n << 60n,
  (1n << 63n) - 1n,
  1n << 63n,
  (1n << 64n) - 1n,
];

const INTERESTING_TEXT: readonly string[] = [
  "0",
  "1",
  "-1",
  "-0",
  "2",
  "255",
  "256",
  "65536",
  "4294967295",
  "4294967296",
  "9007199254740991",
  "9007199254740992",
  "9007199254740993",
  "18446744073709551615",
  "18446744073709551616",
  "1e308",
  "1e400",
  "-1e400",
  "0.5",
  "1.5",
  "1e-400",
  "NaN",
  "Infinity",
  "-Infinity",
  "null",
  "true",
  '""',
  "[]",
  "{}",
  "100000000",
  "100000001",
  "1073741824",
];

export interface MutatorOptions {
  maxLength: number;
  /** Tokens of the format (keys, type names, magic numbers), inserted or overwritten whole. */
  dictionary: readonly Uint8Array[];
  /** The same tokens as text, for the JSON mutator. */
  dictionaryWords: readonly string[];
}

type Mutator = (d: Uint8Array, rng: Rng, o: MutatorOptions, other: Uint8Array) => Uint8Array;

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function le(value: bigint, width: number): Uint8Array {
  const out = new Uint8Array(width);
  let v = BigInt.asUintN(width * 8, value);
  for (let i = 0; i < width; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function overwrite(d: Uint8Array, at: number, bytes: Uint8Array): Uint8Array {
  const out = d.slice();
  out.set(bytes.subarray(0, Math.max(0, out.length - at)), at);
  return out;
}

function insert(d: Uint8Array, at: number, bytes: Uint8Array): Uint8Array {
  return concat(d.subarray(0, at), bytes, d.subarray(at));
}

const text = new TextEncoder();
const decoder = new TextDecoder();

// Structure-aware JSON mutation: listed three times so JSON targets get it often.
// A NUL ends the JSON part of inputs that carry binary data after it (safetensors-header).
const jsonMutator: Mutator = (d, rng, o) => {
  if (d.length > 1 << 20) return d;
  const cut = d.indexOf(0);
  const head = cut < 0 ? d : d.subarray(0, cut);
  const out = mutateJsonOrLine(decoder.decode(head), rng, o.dictionaryWords);
  if (out === null) return d;
  return cut < 0 ? text.encode(out) : concat(text.encode(out), d.subarray(cut));
};

const MUTATORS: readonly Mutator[] = [
  // Flip one bit.
  (d, rng) => {
    if (d.length === 0) return d;
    const out = d.slice();
    out[rng.below(out.length)]! ^= 1 << rng.below(8);
    return out;
  },
  // Set one byte.
  (d, rng) => {
    if (d.length === 0) return Uint8Array.of(rng.below(256));
    const out = d.slice();
    out[rng.below(out.length)] = rng.below(256);
    return out;
  },
  // A boundary integer, little-endian, 1/2/4/8 bytes wide.
  (d, rng) => {
    const width = rng.pick([1, 2, 4, 8]);
    const v = rng.pick(INTERESTING_U64);
    const bytes = le(rng.below(4) === 0 ? v - 1n : v, width);
    return rng.below(4) === 0
      ? insert(d, rng.below(d.length + 1), bytes)
      : overwrite(d, rng.below(d.length + 1), bytes);
  },
  // Add or subtract a little from a little-endian u32 or u64.
  (d, rng) => {
    const width = rng.pick([4, 8]);
    if (d.length < width) return d;
    const at = rng.below(d.length - width + 1);
    let v = 0n;
    for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(d[at + i]!);
    const delta = BigInt(rng.below(35)) - 17n;
    return overwrite(d, at, le(v + delta, width));
  },
  // Replace a run of ASCII digits (a number in JSON or CSV) with a boundary number.
  (d, rng) => {
    const starts: number[] = [];
    for (let i = 0; i < d.length; i++)
      if (d[i]! >= 0x30 && d[i]! <= 0x39 && (i === 0 || d[i - 1]! < 0x30 || d[i - 1]! > 0x39)) starts.push(i);
    if (starts.length === 0) return d;
    const s = rng.pick(starts);
    let e = s;
    while (e < d.length && d[e]! >= 0x30 && d[e]! <= 0x39) e++;
    return concat(d.subarray(0, s), text.encode(rng.pick(INTERESTING_TEXT)), d.subarray(e));
  },
  // A dictionary token, inserted or overwritten.
  (d, rng, o) => {
    if (o.dictionary.length === 0) return d;
    const tok = rng.pick(o.dictionary);
    const at = rng.below(d.length + 1);
    return rng.below(2) === 0 ? insert(d, at, tok) : overwrite(d, at, tok);
  },
  // Delete a chunk.
  (d, rng) => {
    if (d.length < 2) return d;
    const at = rng.below(d.length);
    const n = 1 + rng.below(Math.min(64, d.length - at));
    return concat(d.subarray(0, at), d.subarray(at + n));
  },
  // Insert random bytes, or one byte repeated (long runs find length limits).
  (d, rng) => {
    const n = 1 + rng.below(rng.below(8) === 0 ? 512 : 16);
    const bytes = new Uint8Array(n);
    if (rng.below(2) === 0) bytes.fill(rng.below(256));
    else for (let i = 0; i < n; i++) bytes[i] = rng.below(256);
    return insert(d, rng.below(d.length + 1), bytes);
  },
  // Copy a chunk of the input elsewhere in it (duplicates records, keys, tensors).
  (d, rng) => {
    if (d.length < 2) return d;
    const from = rng.below(d.length);
    const n = 1 + rng.below(Math.min(256, d.length - from));
    const chunk = d.slice(from, from + n);
    const at = rng.below(d.length + 1);
    return rng.below(2) === 0 ? insert(d, at, chunk) : overwrite(d, at, chunk);
  },
  // Crossover: the head of this input with the tail of another.
  (d, rng, _o, other) => {
    if (other.length === 0) return d;
    return concat(d.subarray(0, rng.below(d.length + 1)), other.subarray(rng.below(other.length)));
  },
  // Truncate (a file cut short by a crash or an interrupted download).
  (d, rng) => (d.length === 0 ? d : d.slice(0, rng.below(d.length))),
  jsonMutator,
  jsonMutator,
  jsonMutator,
];

/**
 * A mutant of `data`: a third of the time one structure-aware JSON mutation alone (a
 * byte mutation stacked after it would mostly undo its validity), otherwise 1-5
 * stacked mutations of any kind; capped at `maxLength` bytes.
 */
export function mutate(data: Uint8Array, other: Uint8Array, rng: Rng, o: MutatorOptions): Uint8Array {
  let d = data;
  if (rng.below(3) === 0) d = jsonMutator(d, rng, o, other);
  if (d === data) {
    const rounds = 1 + rng.below(5);
    for (let i = 0; i < rounds; i++) d = rng.pick(MUTATORS)(d, rng, o, other);
  }
  return d.length > o.maxLength ? d.slice(0, o.maxLength) : d;
}
