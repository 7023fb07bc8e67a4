/** torch.nn.LayerNorm over the last axis with timm's eps 1e-6 (tfjs' own layer defaults to 1e-3). */
import * as tf from "@tensorflow/tfjs";
import { Layer } from "../module.js";
import { customOp } from "./custom_op.js";

/** One custom op (./custom_op.ts) with its backward written out: ~9 taped ops otherwise. */
function layerNorm(eps: number): (x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor) => tf.Tensor {
  return customOp(
    (x, w, b) => {
      const centered = tf.sub(x, tf.mean(x, -1, true));
      // Biased variance (divide by dim), as torch: two passes, so no cancellation for large means.
      const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centered), -1, true), eps));
      const normed = tf.mul(centered, rstd);
      return { value: tf.add(tf.mul(normed, w), b), save: [normed, rstd, w] };
    },
    (dy, [xhat, rstd, w]) => {
      const dim = xhat.shape[xhat.rank - 1];
      const rows = (t: tf.Tensor) => tf.sum(tf.reshape(t, [-1, dim]), 0);
      // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight, means over the normalized axis.
      const g = tf.mul(dy, w);
      const dx = tf.mul(
        rstd,
        tf.sub(tf.sub(g, tf.mean(g, -1, true)), tf.mul(xhat, tf.mean(tf.mul(g, xhat), -1, true))),
      );
      return [dx, rows(tf.mul(dy, xhat)), rows(dy)];
    },
  );
}

/** timm's LayerNorm eps everywhere in ViT/DeiT (partial(nn.LayerNorm, eps=1e-6)). */
export const LAYER_NORM_EPS = 1e-6;

export class LayerNorm extends Layer {
  private readonly op: ReturnType<typeof layerNorm>;

  constructor(
    readonly dim: number,
    readonly eps = LAYER_NORM_EPS,
  ) {
    super();
    this.addParam("weight", [dim], "norm");
    this.addParam("bias", [dim], "norm");
    this.op = layerNorm(eps);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.op(x, this.param("weight"), this.param("bias"));
  }
}
