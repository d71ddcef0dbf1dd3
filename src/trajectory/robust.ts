/**
 * A trailing window of the last N values with its median and median absolute
 * deviation (MAD), for robust running baselines: unlike a mean and standard
 * deviation, neither moves much when a few values in the window are outliers.
 */

/** MAD times this estimates the standard deviation of normally distributed data. */
export const MAD_TO_SIGMA = 1.4826;

export class RollingWindow {
  private readonly fifo: number[] = [];
  private readonly sorted: number[] = [];

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`window capacity ${capacity} must be a positive integer`);
  }

  get size(): number {
    return this.sorted.length;
  }

  /** Adds a finite value, evicting the oldest once the window is full. */
  push(x: number): void {
    if (this.fifo.length === this.capacity) {
      const old = this.fifo.shift()!;
      this.sorted.splice(this.lowerBound(old), 1);
    }
    this.fifo.push(x);
    this.sorted.splice(this.lowerBound(x), 0, x);
  }

  clear(): void {
    this.fifo.length = 0;
    this.sorted.length = 0;
  }

  /** First index whose value is >= x. */
  private lowerBound(x: number): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.sorted[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  median(): number {
    const s = this.sorted;
    const n = s.length;
    if (n === 0) return Number.NaN;
    return n % 2 === 1 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  }

  /**
   * Median of |x - median|. The deviations left and right of the median are each
   * already sorted, so a merge finds their middle in O(n) without sorting again.
   */
  mad(): number {
    const s = this.sorted;
    const n = s.length;
    if (n === 0) return Number.NaN;
    const m = this.median();
    let l = this.lowerBound(m) - 1;
    let r = l + 1;
    const lo = (n - 1) >> 1;
    const hi = n >> 1;
    let a = 0;
    let b = 0;
    for (let rank = 0; rank <= hi; rank++) {
      let d: number;
      if (l >= 0 && (r >= n || m - s[l]! <= s[r]! - m)) d = m - s[l--]!;
      else d = s[r++]! - m;
      if (rank === lo) a = d;
      if (rank === hi) b = d;
    }
    return (a + b) / 2;
  }
}
