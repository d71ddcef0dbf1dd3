/**
 * Held-out loss over the fixed windows of a token stream (data/heldout-windows.ts):
 * forward passes only, batched, the same windows on every call.
 */
import { PmaError } from "../common/errors.js";
import { IGNORE_INDEX } from "../nn/layers/cross-entropy.js";
import type { Model } from "../nn/model.js";
import type { TokenStream } from "../data/batches.js";
import { heldoutWindows } from "../data/heldout-windows.js";

export interface HeldoutLoss {
  /** Mean next-token cross-entropy (nats) over every scored token. */
  loss: number;
  perplexity: number;
  /** Tokens scored. */
  tokens: number;
  windows: number;
}

/**
 * Scores fixed windows of one stream with a forward-only model of shape (batch, seq).
 * Holds its input buffers, so repeated calls (every M training tokens, or many
 * checkpoints loaded into the same model) allocate nothing.
 */
export class HeldoutEvaluator {
  readonly windows: Uint32Array;
  private readonly tokens: Int32Array;
  private readonly targets: Int32Array;

  constructor(
    private readonly model: Model,
    private readonly stream: TokenStream,
    maxTokens = 0,
  ) {
    this.windows = heldoutWindows(stream.length, model.seq, maxTokens);
    if (this.windows.length === 0) {
      throw new PmaError(
        "USAGE",
        `the held-out split has ${stream.length} tokens, too few for one window of ${model.seq} + 1`,
      );
    }
    this.tokens = new Int32Array(model.T);
    this.targets = new Int32Array(model.T);
  }

  /** Mean cross-entropy of the model's current parameters (MoE aux loss excluded). */
  run(): HeldoutLoss {
    const { model, windows, tokens, targets, stream } = this;
    const S = model.seq;
    let sum = 0;
    let count = 0;
    for (let w0 = 0; w0 < windows.length; w0 += model.batch) {
      for (let r = 0; r < model.batch; r++) {
        const base = r * S;
        if (w0 + r < windows.length) {
          const o = windows[w0 + r]!;
          for (let t = 0; t < S; t++) {
            tokens[base + t] = stream[o + t]!;
            targets[base + t] = stream[o + t + 1]!;
          }
        } else {
          // The last batch is padded with unscored rows rather than a second model shape.
          tokens.fill(0, base, base + S);
          targets.fill(IGNORE_INDEX, base, base + S);
        }
      }
      model.forward(tokens, targets);
      const { ce, tokens: n } = model.lastLoss;
      sum += ce * n;
      count += n;
    }
    const loss = sum / count;
    return { loss, perplexity: Math.exp(loss), tokens: count, windows: windows.length };
  }
}
