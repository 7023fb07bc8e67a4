/**
 * timm's multi-head self-attention: one fused qkv projection whose output rows are q | k | v, each
 * split into heads of head_dim consecutive rows; softmax((q * head_dim^-0.5) k^T) v; output proj.
 *
 * Between the two projections the computation is one custom op (./custom_op.ts): as ~15 taped ops (head
 * split, products, softmax, merge) it held several copies of the qkv output and of [B, heads, T, T] until
 * the backward pass ended. It saves the qkv output and the probabilities; its backward pass splits q, k, v
 * again (a transpose).
 */
import * as tf from "@tensorflow/tfjs";
import { type ForwardContext, Layer } from "../module.js";
import { customOp } from "./custom_op.js";
import { dropout } from "./dropout.js";
import { Linear } from "./linear.js";

const swapLast = (x: tf.Tensor) => tf.transpose(x, [0, 2, 1]);

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
    return this.proj_drop.call(this.proj.call(this.mix(this.qkv.call(x, ctx), ctx), ctx), ctx);
  }

  /** The qkv output `[B, T, 3D]` -> every head's softmax(q k^T * scale) v, heads side by side: `[B, T, D]`. */
  private mix(qkv: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const [b, t] = qkv.shape;
    const [h, hd, scale] = [this.numHeads, this.headDim, this.scale];
    // [B, T, 3D] -> [B, T, 3*heads, hd] -> [B, 3*heads, T, hd] -> q, k, v [B*heads, T, hd].
    // A rank-4 transpose: wasm's rank-5 one takes a slow generic path.
    const split = (y: tf.Tensor) =>
      tf
        .split(tf.transpose(tf.reshape(y, [b, t, 3 * h, hd]), [0, 2, 1, 3]), 3, 1)
        .map((z) => tf.reshape(z, [b * h, t, hd]));
    // [B*heads, T, hd] -> [B, T, heads, hd] = [B, T, D], and back.
    const merge = (z: tf.Tensor) =>
      tf.reshape(tf.transpose(tf.reshape(z, [b, h, t, hd]), [0, 2, 1, 3]), [b, t, h * hd]);
    const unmerge = (z: tf.Tensor) =>
      tf.reshape(tf.transpose(tf.reshape(z, [b, t, h, hd]), [0, 2, 1, 3]), [b * h, t, hd]);
    const mixHeads = customOp(
      (y) => {
        const [q, k, v] = split(y);
        const probs = tf.softmax(tf.matMul(tf.mul(q, scale), swapLast(k))); // [B*heads, T, T]
        const dropped = tf.reshape(this.attn_drop.call(tf.reshape(probs, [b, h, t, t]), ctx), [b * h, t, t]);
        return { value: merge(tf.matMul(dropped, v)), save: [y, probs, dropped] };
      },
      (dy, [y, p, pd]) => {
        const [q, k, v] = split(y);
        const dOut = unmerge(dy);
        // Nested tidies free each [B*heads, T, T] temporary as soon as it is used.
        const dv = tf.tidy(() => tf.matMul(swapLast(pd), dOut));
        // Softmax backward through the dropout mask m (pd = p * m, an identity at rate 0), with
        // g = m * p * dL/dpd: dL/dscores = g - p * rowsum(g).
        const dScores = tf.tidy(() => {
          const g = tf.mul(pd, tf.matMul(dOut, swapLast(v)));
          return tf.sub(g, tf.mul(p, tf.sum(g, -1, true)));
        });
        const dq = tf.mul(tf.matMul(dScores, k), scale);
        const dk = tf.tidy(() => tf.matMul(swapLast(dScores), tf.mul(q, scale)));
        // dq, dk, dv [B*heads, T, hd] -> [B, 3*heads, T, hd] -> [B, T, 3*heads, hd] = [B, T, 3D]
        const heads = tf.concat(
          [dq, dk, dv].map((z) => tf.reshape(z, [b, h, t, hd])),
          1,
        );
        return [tf.reshape(tf.transpose(heads, [0, 2, 1, 3]), [b, t, 3 * h * hd])];
      },
    );
    return mixHeads(qkv);
  }
}
