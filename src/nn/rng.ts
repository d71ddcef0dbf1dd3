/**
 * Seeded pseudo-random numbers for initialisation and data order: xoshiro128**
 * (Blackman & Vigna), 128 bits of state in four uint32 words, seeded through
 * splitmix32 so that nearby seeds give unrelated streams. Chosen because it is tiny,
 * fast with 32-bit integer math in JS, and its whole state is four numbers that a
 * checkpoint can save (`state()`) and restore (`Rng.fromState`) to continue the
 * exact same stream.
 */
export type RngState = [number, number, number, number];

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    // splitmix32 expands one 32-bit seed into four well-mixed words (never all zero).
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  static fromState(s: RngState): Rng {
    const r = new Rng(0);
    r.setState(s);
    return r;
  }

  state(): RngState {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  setState(s: RngState): void {
    if ((s[0] | s[1] | s[2] | s[3]) === 0) throw new RangeError("xoshiro128** state must not be all zero");
    this.s0 = s[0] >>> 0;
    this.s1 = s[1] >>> 0;
    this.s2 = s[2] >>> 0;
    this.s3 = s[3] >>> 0;
  }

  /** Next uniform uint32. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n), without modulo bias. */
  int(n: number): number {
    if (!(n >= 1 && n <= 0x100000000)) throw new RangeError(`Rng.int bound must be in 1..2^32, got ${n}`);
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /**
   * Fills `out` with N(0, std^2) samples (Box-Muller, both outputs used, so the stream
   * position after a fill depends only on the length).
   */
  fillNormal(out: Float32Array | Float64Array, std: number): void {
    const n = out.length;
    for (let i = 0; i < n; i += 2) {
      const u1 = 1 - this.uniform(); // (0, 1]: log is finite
      const u2 = this.uniform();
      const r = std * Math.sqrt(-2 * Math.log(u1));
      const a = 2 * Math.PI * u2;
      out[i] = r * Math.cos(a);
      if (i + 1 < n) out[i + 1] = r * Math.sin(a);
    }
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** FNV-1a hash of a string: gives each parameter tensor its own init stream. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
