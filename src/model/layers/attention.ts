/**
 * timm's multi-head self-attention: one fused qkv projection whose output rows are q | k | v, each
 * split into heads of head_dim consecutive rows; softmax((q * head_dim^-0.5) k^T) v; output proj.
 */
import * as tf from "@tensorflow/tfjs";
import { type ForwardContext, Layer } from "../module.js";
import { dropout } from "./dropout.js";
import { Linear } from "./linear.js";

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
    const h = this.numHeads;
    // [B, T, 3D] -> [B, T, 3*heads, hd] -> [B, 3*heads, T, hd]; a rank-4 transpose (wasm's rank-5 one is slow).
    const heads = tf.transpose(tf.reshape(this.qkv.call(x, ctx), [b, t, 3 * h, this.headDim]), [0, 2, 1, 3]);
    const [q, k, v] = tf.split(heads, 3, 1); // each [B, heads, T, hd]
    const scores = tf.matMul(tf.mul(q, this.scale), k, false, true); // [B, heads, T, T]
    const probs = this.attn_drop.call(tf.softmax(scores), ctx);
    // [B, heads, T, hd] -> [B, T, heads, hd] -> [B, T, D]
    const out = tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [b, t, d]);
    return this.proj_drop.call(this.proj.call(out, ctx), ctx);
  }
}
