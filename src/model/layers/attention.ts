/**
 * timm's multi-head self-attention: one fused qkv projection whose output rows are q | k | v, each
 * split into heads of head_dim consecutive rows; softmax((q * head_dim^-0.5) k^T) v; output proj.
 */
import * as tf from "@tensorflow/tfjs";
import { type ForwardContext, Layer } from "../module.js";
import { dropout } from "./dropout.js";
import { Linear } from "./linear.js";

/**
 * `a [N, m, k] @ b [N, k, n]` item by item. Only for tfjs-backend-wasm: it runs any product with a batch
 * dimension in a scalar loop (~2 GFLOP/s), while one 2-D product per item reaches XNNPACK (7-13 GFLOP/s
 * at attention sizes, bench/README.md). Other backends have real batched kernels.
 */
function batchedProduct(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (tf.getBackend() !== "wasm") return tf.matMul(a, b);
  const bs = tf.unstack(b);
  return tf.stack(tf.unstack(a).map((ai, i) => tf.matMul(ai as tf.Tensor2D, bs[i] as tf.Tensor2D)));
}

const swapLast = (x: tf.Tensor) => tf.transpose(x, [0, 2, 1]);

/** `batchedProduct` with its backward (da = dy b^T, db = a^T dy) made of the same untransposed products. */
const bmm = tf.customGrad((a, b, save) => {
  (save as tf.GradSaveFunc)([a as tf.Tensor, b as tf.Tensor]);
  return {
    value: batchedProduct(a as tf.Tensor, b as tf.Tensor),
    // In a tidy: tfjs keeps whatever a gradient function leaves in scope until the whole backward pass ends.
    gradFunc: (dy: tf.Tensor, [as, bs]: tf.Tensor[]) =>
      tf.tidy(() => [batchedProduct(dy, swapLast(bs)), batchedProduct(swapLast(as), dy)]),
  };
});

export class Attention extends Layer {
  readonly headDim: number;
  readonly scale: number;
  private readonly qkv: Linear;
  /** Its output is the attention probabilities [B, heads, T, T] (what attention maps read). */
  readonly attn_drop: Layer;
  private readonly proj: Linear;
  private readonly proj_drop: Layer;

  constructor(
    readonly dim: number,
    readonly numHeads: number,
    opts: { qkvBias: boolean; attnDrop: number; projDrop: number },
  ) {
    super();
    this.headDim = dim / numHeads;
    this.scale = this.headDim ** -0.5;
    this.qkv = this.addModule("qkv", new Linear(dim, 3 * dim, opts.qkvBias));
    this.attn_drop = this.addModule("attn_drop", dropout(opts.attnDrop));
    this.proj = this.addModule("proj", new Linear(dim, dim));
    this.proj_drop = this.addModule("proj_drop", dropout(opts.projDrop));
  }

  /** `[B, T, D] -> [B, T, D]` */
  forward(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const [b, t, d] = x.shape;
    const [h, hd] = [this.numHeads, this.headDim];
    // [B, T, 3D] -> [B, T, 3*heads, hd] -> [B, 3*heads, T, hd]; a rank-4 transpose (wasm's rank-5 one is slow).
    const heads = tf.transpose(tf.reshape(this.qkv.call(x, ctx), [b, t, 3 * h, hd]), [0, 2, 1, 3]);
    const [q, k, v] = tf.split(heads, 3, 1).map((z) => tf.reshape(z, [b * h, t, hd])); // [B*heads, T, hd]
    const scores = bmm(tf.mul(q, this.scale), swapLast(k)); // [B*heads, T, T]
    const probs = this.attn_drop.call(tf.reshape(tf.softmax(scores), [b, h, t, t]), ctx);
    // [B*heads, T, hd] -> [B, heads, T, hd] -> [B, T, heads, hd] -> [B, T, D]
    const mixed = tf.reshape(bmm(tf.reshape(probs, [b * h, t, t]), v), [b, h, t, hd]);
    const out = tf.reshape(tf.transpose(mixed, [0, 2, 1, 3]), [b, t, d]);
    return this.proj_drop.call(this.proj.call(out, ctx), ctx);
  }
}
