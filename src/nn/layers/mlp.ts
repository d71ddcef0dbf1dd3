import type { MatmulBackend } from "../kernels/matmul.js";
import { linearBackward, linearForward } from "./linear.js";
import { swigluBackward, swigluForward } from "./swiglu.js";

/** Backward temporaries shared by all MLP layers of a model; empty for a forward-only model. */
export class MlpScratch {
  readonly dgu: Float32Array;
  readonly dh: Float32Array;
  constructor(backend: MatmulBackend, rows: number, I: number, withGrad = true) {
    this.dgu = withGrad ? backend.alloc(rows * 2 * I) : new Float32Array(0);
    this.dh = withGrad ? backend.alloc(rows * I) : new Float32Array(0);
  }
}

/**
 * Llama MLP: down(silu(gate(x)) * up(x)). gate and up are one stacked [2I, H] weight
 * so both projections are a single GEMM.
 */
export class SwiGluMlp {
  private readonly backend: MatmulBackend;
  private readonly T: number;
  private readonly H: number;
  private readonly I: number;
  private readonly s: MlpScratch;
  /** Saved: [gate | up] pre-activations [T, 2I], sigmoid(gate) and the activation h [T, I]. */
  readonly gu: Float32Array;
  readonly sig: Float32Array;
  readonly h: Float32Array;

  constructor(backend: MatmulBackend, T: number, H: number, I: number, scratch: MlpScratch) {
    this.backend = backend;
    this.T = T;
    this.H = H;
    this.I = I;
    this.s = scratch;
    this.gu = backend.alloc(T * 2 * I);
    this.sig = new Float32Array(T * I);
    this.h = backend.alloc(T * I);
  }

  /** out (+)= mlp(xn). */
  forward(
    out: Float32Array,
    xn: Float32Array,
    wGateUp: Float32Array,
    wDown: Float32Array,
    accumulate: boolean,
  ): void {
    const { T, H, I } = this;
    linearForward(this.backend, this.gu, xn, wGateUp, T, H, 2 * I);
    swigluForward(this.h, this.sig, this.gu, T, I);
    this.backend.gemm({
      transA: false,
      transB: true,
      M: T,
      N: H,
      K: I,
      alpha: 1,
      A: this.h,
      lda: I,
      B: wDown,
      ldb: I,
      beta: accumulate ? 1 : 0,
      C: out,
      ldc: H,
    });
  }

  /** dxn = d/dxn (overwritten); weight gradients added. */
  backward(
    dxn: Float32Array,
    dwGateUp: Float32Array,
    dwDown: Float32Array,
    dout: Float32Array,
    xn: Float32Array,
    wGateUp: Float32Array,
    wDown: Float32Array,
  ): void {
    const { T, H, I } = this;
    linearBackward(this.backend, this.s.dh, dwDown, dout, this.h, wDown, T, I, H);
    swigluBackward(this.s.dgu, this.s.dh, this.gu, this.sig, T, I);
    linearBackward(this.backend, dxn, dwGateUp, this.s.dgu, xn, wGateUp, T, H, 2 * I);
  }
}
