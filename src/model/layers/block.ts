/** timm's pre-norm transformer block: x + dropPath(attn(norm1(x))), then x + dropPath(mlp(norm2(x))). */
import * as tf from "@tensorflow/tfjs";
import { type ForwardContext, Layer } from "../module.js";
import { Attention } from "./attention.js";
import { customOp } from "./custom_op.js";
import { dropPath } from "./drop_path.js";
import { LayerNorm } from "./layer_norm.js";
import { Mlp } from "./mlp.js";

/**
 * x + branch as a custom op that saves nothing: tfjs's add keeps both inputs alive for the backward pass
 * (only to read their shapes), two activations per residual. The gradient is dy for both.
 */
const residual = customOp(
  (x, branch) => ({ value: tf.add(x, branch), save: [] }),
  (dy) => [dy, dy],
);

export interface BlockOptions {
  dim: number;
  numHeads: number;
  mlpRatio: number;
  qkvBias: boolean;
  /** Dropout after the attention projection and in the MLP. */
  drop: number;
  attnDrop: number;
  dropPath: number;
}

export class Block extends Layer {
  private readonly norm1: LayerNorm;
  readonly attn: Attention;
  /** Stochastic depth of this block (an identity at rate 0). */
  readonly drop_path1: Layer;
  private readonly norm2: LayerNorm;
  private readonly mlp: Mlp;
  readonly drop_path2: Layer;

  constructor(o: BlockOptions) {
    super();
    this.norm1 = this.addModule("norm1", new LayerNorm(o.dim));
    this.attn = this.addModule(
      "attn",
      new Attention(o.dim, o.numHeads, { qkvBias: o.qkvBias, attnDrop: o.attnDrop, projDrop: o.drop }),
    );
    this.drop_path1 = this.addModule("drop_path1", dropPath(o.dropPath));
    this.norm2 = this.addModule("norm2", new LayerNorm(o.dim));
    // timm: int(dim * mlp_ratio)
    this.mlp = this.addModule("mlp", new Mlp(o.dim, Math.floor(o.dim * o.mlpRatio), o.drop));
    this.drop_path2 = this.addModule("drop_path2", dropPath(o.dropPath));
  }

  forward(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const h = residual(x, this.drop_path1.call(this.attn.call(this.norm1.call(x, ctx), ctx), ctx));
    return residual(h, this.drop_path2.call(this.mlp.call(this.norm2.call(h, ctx), ctx), ctx));
  }
}
