import { PmaError } from "../common/errors.js";
import type { NamedTensor, ParamSet } from "./params.js";

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay (AdamW), applied only to tensors with `decay` (matrices). */
  weightDecay: number;
  /** Clip the global gradient L2 norm to this value; 0 or Infinity disables clipping. */
  maxGradNorm: number;
}

/** Common LLM pre-training values (GPT-3 / Llama: betas 0.9/0.95, decay 0.1, clip 1). */
export const DEFAULT_ADAMW: Readonly<AdamWOptions> = Object.freeze({
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  maxGradNorm: 1.0,
});

/** Optimizer state for a checkpoint: step count and the moments under parameter names. */
export interface AdamWState {
  step: number;
  /** `<param>.exp_avg` and `<param>.exp_avg_sq` for every parameter (torch's names). */
  tensors: NamedTensor[];
}

/**
 * AdamW as torch.optim.AdamW (decoupled decay: p *= 1 - lr*wd, then the bias-corrected
 * Adam step p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)), with global gradient
 * norm clipping as torch.nn.utils.clip_grad_norm_ (scale max/(norm+1e-6) when the norm
 * exceeds max). Clipping is folded into the update loop; the gradient buffer itself is
 * not modified.
 *
 * Weight-decay rule: a parameter decays iff it has >= 2 dimensions (linear weights,
 * embeddings, router); 1-D tensors (RMSNorm gains, the role biases play elsewhere) are
 * exempt, so decay never pulls norm gains towards 0.
 */
export class AdamW {
  readonly options: AdamWOptions;
  private readonly params: ParamSet;
  /** First and second moments, flat in the parameter layout. */
  readonly m: Float32Array;
  readonly v: Float32Array;
  private t = 0;

  constructor(params: ParamSet, options: Partial<AdamWOptions> = {}) {
    this.params = params;
    this.options = { ...DEFAULT_ADAMW, ...options };
    const o = this.options;
    if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1)) {
      throw new PmaError("CONFIG_INVALID", `AdamW betas must be in [0, 1), got ${o.beta1}, ${o.beta2}`);
    }
    if (!(o.eps > 0) || !(o.weightDecay >= 0) || !(o.maxGradNorm >= 0)) {
      throw new PmaError(
        "CONFIG_INVALID",
        `AdamW needs eps > 0, weightDecay >= 0, maxGradNorm >= 0; got ${o.eps}, ${o.weightDecay}, ${o.maxGradNorm}`,
      );
    }
    this.m = new Float32Array(params.numel);
    this.v = new Float32Array(params.numel);
  }

  /** Completed steps (torch's `state['step']`). */
  get steps(): number {
    return this.t;
  }

  /** Global L2 norm of the current gradients (double accumulation). */
  gradNorm(): number {
    const g = this.params.grad;
    let s = 0;
    for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
    return Math.sqrt(s);
  }

  /**
   * One update with learning rate `lr` from the gradients in params.grad. Returns the
   * gradient norm before clipping. A non-finite norm throws NONFINITE and leaves
   * parameters and state untouched (the caller decides: skip the batch or stop).
   */
  step(lr: number): number {
    const norm = this.gradNorm();
    if (!Number.isFinite(norm)) {
      throw new PmaError(
        "NONFINITE",
        `gradient norm is ${norm} at step ${this.t + 1}; parameters were not updated`,
      );
    }
    const { beta1: b1, beta2: b2, eps, weightDecay: wd, maxGradNorm: maxNorm } = this.options;
    const clip = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
    this.t++;
    const bc1 = 1 - Math.pow(b1, this.t);
    const bc2Sqrt = Math.sqrt(1 - Math.pow(b2, this.t));
    const stepSize = lr / bc1;
    const p = this.params.data;
    const g = this.params.grad;
    const { m, v } = this;
    for (const info of this.params.infos) {
      const decay = info.decay ? 1 - lr * wd : 1;
      const end = info.offset + info.size;
      for (let i = info.offset; i < end; i++) {
        const gi = g[i]! * clip;
        const mi = b1 * m[i]! + (1 - b1) * gi;
        const vi = b2 * v[i]! + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i]! * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
      }
    }
    return norm;
  }

  /** Moments as named views (copy them if they must outlive the next update). */
  exportState(): AdamWState {
    const tensors: NamedTensor[] = [];
    for (const i of this.params.infos) {
      tensors.push({
        name: `${i.name}.exp_avg`,
        shape: [...i.shape],
        data: this.m.subarray(i.offset, i.offset + i.size),
      });
      tensors.push({
        name: `${i.name}.exp_avg_sq`,
        shape: [...i.shape],
        data: this.v.subarray(i.offset, i.offset + i.size),
      });
    }
    return { step: this.t, tensors };
  }

  /** Restores exportState()'s output; every moment must be present with its shape. */
  importState(state: AdamWState): void {
    if (!Number.isInteger(state.step) || state.step < 0) {
      throw new PmaError(
        "CHECKPOINT_MISMATCH",
        `optimizer step must be a non-negative integer, got ${state.step}`,
      );
    }
    const byName = new Map(state.tensors.map((t) => [t.name, t]));
    const expected = new Set<string>();
    const staged: [Float32Array, number, Float32Array][] = [];
    for (const i of this.params.infos) {
      for (const [suffix, dst] of [
        ["exp_avg", this.m],
        ["exp_avg_sq", this.v],
      ] as const) {
        const name = `${i.name}.${suffix}`;
        expected.add(name);
        const t = byName.get(name);
        if (t === undefined) throw new PmaError("TENSOR_NOT_FOUND", `optimizer state has no ${name}`);
        if (t.shape.join(",") !== i.shape.join(",") || t.data.length !== i.size) {
          throw new PmaError(
            "TENSOR_SIZE_MISMATCH",
            `optimizer state ${name} has shape [${t.shape.join(", ")}], parameter is [${i.shape.join(", ")}]`,
          );
        }
        staged.push([dst, i.offset, t.data]);
      }
    }
    for (const name of byName.keys()) {
      if (!expected.has(name))
        throw new PmaError(
          "CHECKPOINT_MISMATCH",
          `optimizer state has ${name}, which matches no parameter of this model`,
        );
    }
    for (const [dst, off, data] of staged) dst.set(data, off);
    this.t = state.step;
  }
}
