import { PmaError } from "../common/errors.js";
import type { ModelConfig } from "./config.js";
import { isMoe, sameConfig, validateConfig } from "./config.js";
import type { MatmulBackend } from "./kernels/matmul.js";
import type { AttentionDims } from "./layers/attention.js";
import { AttentionScratch, CausalSelfAttention } from "./layers/attention.js";
import { crossEntropyBackward, crossEntropyForward } from "./layers/cross-entropy.js";
import { embeddingBackward, embeddingForward } from "./layers/embedding.js";
import { linearBackward, linearForward } from "./layers/linear.js";
import { MlpScratch, SwiGluMlp } from "./layers/mlp.js";
import { MoeBlock, MoeScratch } from "./layers/moe.js";
import { rmsnormBackward, rmsnormForward } from "./layers/rmsnorm.js";
import { ropeTables } from "./layers/rope.js";
import { ParamSet } from "./params.js";

export interface ModelShape {
  batch: number;
  seq: number;
}

/**
 * Logit magnitudes of a forward, the monitors of the two instabilities that small
 * Transformers show at high learning rates (Wortsman et al., 2023): attention-logit
 * growth (the largest q.k/sqrt(hd) of any layer, head and position) and output-logit
 * divergence (the largest output logit, and the mean log Z over scored positions, which
 * drifts far from 0 when the output logits diverge).
 */
export interface LogitStats {
  attnLogitMax: number;
  outputLogitMax: number;
  outputLogZ: number;
}

/** The parts of the last forward's loss. `loss = ce + aux`. */
export interface LossParts {
  loss: number;
  /** Mean cross-entropy over counted target positions (0 when none counted). */
  ce: number;
  /** router_aux_loss_coef * load-balancing loss (0 for dense models). */
  aux: number;
  /** Number of target positions the cross-entropy averaged over. */
  tokens: number;
}

export interface CreateModelOptions {
  /** Share an existing parameter set (e.g. an eval model with another batch shape). */
  params?: ParamSet;
  /** Init seed for a fresh parameter set (default 0). */
  seed?: number;
  /**
   * Evaluation only: one set of block activations is reused by every layer and the
   * residual stream is updated in place, so activation memory does not grow with
   * depth; nothing is kept for a backward, which this model refuses. Same kernels in
   * the same order on the same data as the training forward: identical losses.
   */
  forwardOnly?: boolean;
}

/**
 * Activations one transformer block keeps from forward to backward (one per layer),
 * or the buffers every layer reuses in turn (forward-only).
 */
interface Block {
  xn1: Float32Array;
  rstd1: Float32Array;
  attn: CausalSelfAttention;
  /** Residual stream after attention (forward-only: the residual stream itself). */
  x2: Float32Array;
  xn2: Float32Array;
  rstd2: Float32Array;
  mlp: SwiGluMlp | null;
  moe: MoeBlock | null;
}

/**
 * A Llama / Mixtral causal LM for one fixed (batch, seq) shape with all activations
 * and activation gradients allocated once, so a training step allocates nothing.
 * Built forwardOnly (evaluation), it holds one layer's activations and no gradients.
 * tokens[b*seq + t] predicts targets[b*seq + t] (the caller shifts; HF shifts inside).
 */
export class Model {
  readonly config: ModelConfig;
  readonly backend: MatmulBackend;
  readonly params: ParamSet;
  readonly batch: number;
  readonly seq: number;
  readonly T: number;
  /**
   * [T, vocab] logits of the last forward. The backward turns this buffer into the
   * logits' gradient in place (it is the largest activation), so read it before.
   */
  readonly logits: Float32Array;
  /** Built with forwardOnly: backward() throws. */
  readonly forwardOnly: boolean;
  /** One per layer; forward-only: a single block that every layer reuses. */
  private readonly blocks: Block[];
  /** Residual stream entering block l (x[L] enters the final norm); forward-only: one buffer updated in place. */
  private readonly x: Float32Array[];
  private readonly xf: Float32Array;
  private readonly rstdf: Float32Array;
  private readonly lse: Float32Array;
  private readonly dres: Float32Array;
  private readonly dxn: Float32Array;
  private readonly auxGrad: Float64Array;
  /**
   * Router statistics of every layer of the last forward, [layer, expert]: copied out
   * of the MoE block after each layer, since a forward-only model's single block holds
   * only the last layer's.
   */
  private readonly expertCountsBuf: Int32Array;
  private readonly probSumBuf: Float64Array;
  private readonly tokens: Int32Array;
  private readonly targets: Int32Array;
  private readonly mask: Uint8Array;
  private hasMask = false;
  /** "none": no forward yet; "logits": forward without targets; "loss": backward possible. */
  private state: "none" | "logits" | "loss" = "none";
  private last: LossParts = { loss: NaN, ce: NaN, aux: NaN, tokens: 0 };
  /** The largest attention logit of any layer in the last runTrunk(). */
  private trunkAttnLogitMax = NaN;
  private lastLogits: LogitStats = { attnLogitMax: NaN, outputLogitMax: NaN, outputLogZ: NaN };

  constructor(config: ModelConfig, backend: MatmulBackend, shape: ModelShape, opts: CreateModelOptions = {}) {
    validateConfig(config);
    const { batch, seq } = shape;
    if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(seq) || seq < 1) {
      throw new PmaError("USAGE", `model shape must be positive integers, got batch ${batch}, seq ${seq}`);
    }
    if (seq > config.max_position_embeddings) {
      throw new PmaError(
        "USAGE",
        `seq ${seq} exceeds max_position_embeddings ${config.max_position_embeddings}`,
      );
    }
    this.config = config;
    this.backend = backend;
    this.batch = batch;
    this.seq = seq;
    const T = batch * seq;
    this.T = T;
    if (opts.params !== undefined) {
      if (!sameConfig(opts.params.config, config)) {
        throw new PmaError(
          "CHECKPOINT_MISMATCH",
          "the shared parameter set was built for a different model config",
        );
      }
      if (opts.params.backend !== backend) {
        // The WebAssembly backend can only multiply buffers in its own memory.
        throw new PmaError("USAGE", "a shared parameter set must be used with the backend that allocated it");
      }
      this.params = opts.params;
    } else {
      this.params = new ParamSet(config, backend);
      this.params.init(opts.seed ?? 0);
    }

    const H = config.hidden_size;
    const I = config.intermediate_size;
    const dims: AttentionDims = {
      batch,
      seq,
      hidden: H,
      heads: config.num_attention_heads,
      kvHeads: config.num_key_value_heads,
      headDim: config.head_dim,
    };
    const rope = ropeTables(seq, config.head_dim, config.rope_theta);
    const fwdOnly = opts.forwardOnly === true;
    this.forwardOnly = fwdOnly;
    const withGrad = !fwdOnly;
    const attnScratch = new AttentionScratch(backend, dims, withGrad);
    const moe = isMoe(config);
    const moeDims = {
      tokens: T,
      hidden: H,
      intermediate: I,
      experts: config.num_local_experts,
      topK: config.num_experts_per_tok,
    };
    const mlpScratch = moe ? null : new MlpScratch(backend, T, I, withGrad);
    const moeScratch = moe ? new MoeScratch(backend, moeDims, withGrad) : null;
    this.blocks = [];
    this.x = [backend.alloc(T * H)];
    const L = config.num_hidden_layers;
    for (let l = 0; l < (fwdOnly ? 1 : L); l++) {
      this.blocks.push({
        xn1: backend.alloc(T * H),
        rstd1: new Float32Array(T),
        attn: new CausalSelfAttention(backend, dims, rope, attnScratch),
        // Forward-only: attention adds straight onto the residual stream, no copy.
        x2: fwdOnly ? this.x[0]! : backend.alloc(T * H),
        xn2: backend.alloc(T * H),
        rstd2: new Float32Array(T),
        mlp: mlpScratch === null ? null : new SwiGluMlp(backend, T, H, I, mlpScratch),
        moe: moeScratch === null ? null : new MoeBlock(backend, moeDims, moeScratch),
      });
      if (!fwdOnly) this.x.push(backend.alloc(T * H));
    }
    this.xf = backend.alloc(T * H);
    this.rstdf = new Float32Array(T);
    this.logits = backend.alloc(T * config.vocab_size);
    this.lse = new Float32Array(T);
    this.dres = withGrad ? backend.alloc(T * H) : new Float32Array(0);
    this.dxn = withGrad ? backend.alloc(T * H) : new Float32Array(0);
    this.auxGrad = new Float64Array(withGrad ? Math.max(1, config.num_local_experts) : 0);
    this.expertCountsBuf = new Int32Array(L * config.num_local_experts);
    this.probSumBuf = new Float64Array(L * config.num_local_experts);
    this.tokens = new Int32Array(T);
    this.targets = new Int32Array(T);
    this.mask = new Uint8Array(T);
  }

  /**
   * Runs the model and returns the mean loss (cross-entropy over counted targets plus
   * the MoE aux loss). Positions with target IGNORE_INDEX (-100), or mask 0, are not
   * scored. Keeps what backward() needs (unless the model is forward-only).
   */
  forward(tokens: Int32Array, targets: Int32Array, mask?: Uint8Array): number {
    this.checkLength("targets", targets.length);
    if (mask !== undefined) this.checkLength("mask", mask.length);
    this.runTrunk(tokens);
    this.targets.set(targets);
    this.hasMask = mask !== undefined;
    if (mask !== undefined) this.mask.set(mask);
    const V = this.config.vocab_size;
    const { sum, count, maxLogit, logZSum } = crossEntropyForward(
      this.lse,
      this.logits,
      this.targets,
      this.hasMask ? this.mask : null,
      this.T,
      V,
    );
    const ce = count > 0 ? sum / count : 0;
    const aux = this.auxLoss();
    this.last = { loss: ce + aux, ce, aux, tokens: count };
    this.lastLogits = {
      attnLogitMax: this.trunkAttnLogitMax,
      outputLogitMax: maxLogit,
      outputLogZ: count > 0 ? logZSum / count : NaN,
    };
    this.state = "loss";
    return ce + aux;
  }

  /** Forward for evaluation / generation: fills and returns `logits`, no loss. */
  infer(tokens: Int32Array): Float32Array {
    this.runTrunk(tokens);
    this.state = "logits";
    return this.logits;
  }

  /** Loss parts of the last forward(). */
  get lastLoss(): LossParts {
    return { ...this.last };
  }

  /** Logit magnitudes of the last forward() (the instability monitors of LogitStats). */
  get lastLogitStats(): LogitStats {
    return { ...this.lastLogits };
  }

  /**
   * Tokens routed to each expert in the last forward, [layer, expert] row-major (each
   * token counts once per chosen expert, so a layer's row sums to T * k). Empty for
   * dense models. A copy: safe to keep.
   */
  expertCounts(): Int32Array {
    return this.expertCountsBuf.slice();
  }

  zeroGrad(): void {
    this.params.zeroGrad();
  }

  /** Adds d(last forward's loss)/d(params) into params.grad. */
  backward(): void {
    if (this.forwardOnly)
      throw new PmaError(
        "USAGE",
        "backward() on a forward-only (evaluation) model; build it without forwardOnly to train",
      );
    if (this.state !== "loss") {
      throw new PmaError(
        "USAGE",
        this.state === "none"
          ? "backward() before forward()"
          : "backward() needs forward(tokens, targets), not infer() or a second backward()",
      );
    }
    this.state = "none"; // logits now hold their gradient; a second backward would be wrong
    const c = this.config;
    const { T, params } = this;
    const w = params.w;
    const g = params.g;
    const H = c.hidden_size;
    const V = c.vocab_size;
    const L = c.num_hidden_layers;
    const scale = this.last.tokens > 0 ? 1 / this.last.tokens : 0;
    crossEntropyBackward(this.logits, this.lse, this.targets, this.hasMask ? this.mask : null, T, V, scale);
    const dlogits = this.logits;
    linearBackward(this.backend, this.dxn, g.lmHead, dlogits, this.xf, w.lmHead, T, H, V);
    this.dres.fill(0);
    rmsnormBackward(this.dres, g.norm, this.dxn, this.x[L]!, w.norm, this.rstdf, T, H);

    const aux = this.auxGradient();
    for (let l = L - 1; l >= 0; l--) {
      const b = this.blocks[l]!;
      const wl = w.layers[l]!;
      const gl = g.layers[l]!;
      if (b.mlp !== null) {
        b.mlp.backward(this.dxn, gl.gateUp!, gl.down!, this.dres, b.xn2, wl.gateUp!, wl.down!);
      } else {
        b.moe!.backward(
          this.dxn,
          gl.router!,
          gl.expertW13,
          gl.expertW2,
          this.dres,
          b.xn2,
          wl.router!,
          wl.expertW13,
          wl.expertW2,
          aux,
        );
      }
      rmsnormBackward(this.dres, gl.postNorm, this.dxn, b.x2, wl.postNorm, b.rstd2, T, H);
      b.attn.backward(this.dxn, gl.qkv, gl.o, this.dres, b.xn1, wl.qkv, wl.o);
      rmsnormBackward(this.dres, gl.inputNorm, this.dxn, this.x[l]!, wl.inputNorm, b.rstd1, T, H);
    }
    embeddingBackward(g.embed, this.dres, this.tokens, H);
  }

  private checkLength(what: string, n: number): void {
    if (n !== this.T) {
      throw new PmaError(
        "USAGE",
        `${what} has ${n} entries; this model runs batch ${this.batch} x seq ${this.seq} = ${this.T}`,
      );
    }
  }

  private runTrunk(tokens: Int32Array): void {
    this.checkLength("tokens", tokens.length);
    this.state = "none";
    const c = this.config;
    const { T } = this;
    const H = c.hidden_size;
    const eps = c.rms_norm_eps;
    const w = this.params.w;
    this.tokens.set(tokens);
    embeddingForward(this.x[0]!, this.tokens, w.embed, H, c.vocab_size);
    const E = c.num_local_experts;
    // Forward-only: block 0 and residual x[0] for every layer (the `next.set` and
    // `x2.set` copies are then skipped: both alias x, which the layers add onto).
    const one = this.forwardOnly;
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const b = this.blocks[one ? 0 : l]!;
      const wl = w.layers[l]!;
      const x = this.x[one ? 0 : l]!;
      const next = this.x[one ? 0 : l + 1]!;
      rmsnormForward(b.xn1, b.rstd1, x, wl.inputNorm, T, H, eps);
      if (b.x2 !== x) b.x2.set(x);
      b.attn.forward(b.x2, b.xn1, wl.qkv, wl.o, true);
      // Read per layer: a forward-only model reuses one block for every layer.
      if (l === 0 || b.attn.maxLogit > this.trunkAttnLogitMax) this.trunkAttnLogitMax = b.attn.maxLogit;
      rmsnormForward(b.xn2, b.rstd2, b.x2, wl.postNorm, T, H, eps);
      if (next !== b.x2) next.set(b.x2);
      if (b.mlp !== null) b.mlp.forward(next, b.xn2, wl.gateUp!, wl.down!, true);
      else {
        b.moe!.forward(next, b.xn2, wl.router!, wl.expertW13, wl.expertW2, true);
        this.expertCountsBuf.set(b.moe!.counts, l * E);
        this.probSumBuf.set(b.moe!.probSum, l * E);
      }
    }
    rmsnormForward(this.xf, this.rstdf, this.x[one ? 0 : c.num_hidden_layers]!, w.norm, T, H, eps);
    linearForward(this.backend, this.logits, this.xf, w.lmHead, T, H, c.vocab_size);
  }

  /**
   * HF load_balancing_loss_func over all MoE layers at once (it concatenates their
   * router logits): E * sum_e f_e * P_e with f_e = assignments to e / (L*T) (summed
   * over the k slots) and P_e = mean router probability of e over all L*T rows.
   */
  private auxLoss(): number {
    const c = this.config;
    if (!isMoe(c) || c.router_aux_loss_coef === 0) return 0;
    const E = c.num_local_experts;
    const N = c.num_hidden_layers * this.T;
    let s = 0;
    for (let e = 0; e < E; e++) {
      let count = 0;
      let prob = 0;
      for (let l = 0; l < c.num_hidden_layers; l++) {
        count += this.expertCountsBuf[l * E + e]!;
        prob += this.probSumBuf[l * E + e]!;
      }
      s += (count / N) * (prob / N);
    }
    return c.router_aux_loss_coef * E * s;
  }

  /** d(aux)/d p[l, t, e] = coef * E * f_e / (L*T): the same for every layer and token. */
  private auxGradient(): Float64Array | null {
    const c = this.config;
    if (!isMoe(c) || c.router_aux_loss_coef === 0) return null;
    const E = c.num_local_experts;
    const N = c.num_hidden_layers * this.T;
    for (let e = 0; e < E; e++) {
      let count = 0;
      for (let l = 0; l < c.num_hidden_layers; l++) count += this.expertCountsBuf[l * E + e]!;
      this.auxGrad[e] = (c.router_aux_loss_coef * E * (count / N)) / N;
    }
    return this.auxGrad;
  }
}

/** A model for one (batch, seq) shape; fresh parameters initialised from `seed` unless shared. */
export function createModel(
  config: ModelConfig,
  backend: MatmulBackend,
  shape: ModelShape,
  opts: CreateModelOptions = {},
): Model {
  return new Model(config, backend, shape, opts);
}
