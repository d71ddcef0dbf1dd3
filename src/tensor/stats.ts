/**
 * Streaming summary statistics of a tensor, fed chunk by chunk. Mean and variance use
 * Chan et al.'s parallel combination of per-chunk float64 sums, which stays accurate
 * over billions of elements where a naive sum of squares would not. NaN and +-Inf are
 * counted and left out of min/max/mean/std.
 */
export interface TensorStats {
  count: number;
  finite: number;
  nan: number;
  posInf: number;
  negInf: number;
  min: number;
  max: number;
  mean: number;
  std: number;
}

export class StatsAccumulator {
  private n = 0;
  private mean = 0;
  private m2 = 0;
  private min = Infinity;
  private max = -Infinity;
  private total = 0;
  private nan = 0;
  private posInf = 0;
  private negInf = 0;

  add(values: Float32Array | Float64Array): void {
    let n = 0;
    let sum = 0;
    let min = this.min;
    let max = this.max;
    for (let i = 0; i < values.length; i++) {
      const x = values[i]!;
      if (x - x !== 0) {
        if (x !== x) this.nan++;
        else if (x > 0) this.posInf++;
        else this.negInf++;
        continue;
      }
      n++;
      sum += x;
      if (x < min) min = x;
      if (x > max) max = x;
    }
    this.total += values.length;
    this.min = min;
    this.max = max;
    if (n === 0) return;
    const chunkMean = sum / n;
    let m2 = 0;
    for (let i = 0; i < values.length; i++) {
      const x = values[i]!;
      if (x - x === 0) m2 += (x - chunkMean) * (x - chunkMean);
    }
    const total = this.n + n;
    const delta = chunkMean - this.mean;
    this.mean += (delta * n) / total;
    this.m2 += m2 + (delta * delta * this.n * n) / total;
    this.n = total;
  }

  result(): TensorStats {
    return {
      count: this.total,
      finite: this.n,
      nan: this.nan,
      posInf: this.posInf,
      negInf: this.negInf,
      min: this.n > 0 ? this.min : NaN,
      max: this.n > 0 ? this.max : NaN,
      mean: this.n > 0 ? this.mean : NaN,
      std: this.n > 0 ? Math.sqrt(this.m2 / this.n) : NaN,
    };
  }
}
