import { PmaError } from "../common/errors.js";
import type { Model } from "./model.js";

/** One micro-batch: tokens and next-token targets of the model's (batch, seq) shape. */
export interface Batch {
  tokens: Int32Array;
  targets: Int32Array;
  /** Optional loss mask (0 = position not scored), e.g. answers-only fine-tuning. */
  mask?: Uint8Array;
}

export interface LossAndGradient {
  /** Mean over batches of each batch's total loss (cross-entropy + aux). */
  loss: number;
  /** Mean over batches of each batch's cross-entropy part. */
  ce: number;
  /** d loss / d params, same flat layout as `model.params.data`. */
  grad: Float32Array;
}

/**
 * The loss and its gradient at a given parameter vector, averaged over `batches` with
 * equal weight per batch. Meant for analysis (Hessian-vector products as finite
 * differences of gradients, loss landscapes), so it is a pure function of `params` and
 * `batches` as far as the result goes.
 *
 * Side effects: the model's parameters are left equal to `params` and its gradient
 * buffer is overwritten. `out` (length = parameter count) avoids an allocation per
 * call; by default a fresh array is returned, so two calls can be subtracted.
 */
export function lossAndGradient(
  model: Model,
  params: Float32Array,
  batches: readonly Batch[],
  out?: Float32Array,
): LossAndGradient {
  const ps = model.params;
  if (params.length !== ps.numel) {
    throw new PmaError(
      "TENSOR_SIZE_MISMATCH",
      `parameter vector has ${params.length} elements, the model has ${ps.numel}`,
    );
  }
  if (batches.length === 0) throw new PmaError("USAGE", "lossAndGradient needs at least one batch");
  const grad = out ?? new Float32Array(ps.numel);
  if (grad.length !== ps.numel) {
    throw new PmaError(
      "TENSOR_SIZE_MISMATCH",
      `output gradient has ${grad.length} elements, the model has ${ps.numel}`,
    );
  }
  if (params !== ps.data) ps.data.set(params);
  ps.zeroGrad();
  let loss = 0;
  let ce = 0;
  for (const b of batches) {
    loss += model.forward(b.tokens, b.targets, b.mask);
    ce += model.lastLoss.ce;
    model.backward();
  }
  const n = batches.length;
  const src = ps.grad;
  const inv = 1 / n;
  for (let i = 0; i < src.length; i++) grad[i] = src[i]! * inv;
  return { loss: loss / n, ce: ce / n, grad };
}
