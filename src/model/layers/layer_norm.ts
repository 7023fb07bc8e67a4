/** torch.nn.LayerNorm over the last axis with timm's eps 1e-6 (tfjs' own layer defaults to 1e-3). */
import * as tf from "@tensorflow/tfjs";
import { Layer } from "../module.js";

/**
 * One tape node with its backward written out: tfjs keeps every intermediate of a taped op and its
 * gradient until the backward pass ends, which for the ~9 ops of a LayerNorm cost several copies of the
 * activation and twice the kernels (bench/README.md).
 */
function layerNorm(eps: number): (x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor) => tf.Tensor {
  return tf.customGrad((xi, w, b, save) => {
    const [normed, rstd] = tf.tidy(() => {
      const centered = tf.sub(xi as tf.Tensor, tf.mean(xi as tf.Tensor, -1, true));
      // Biased variance (divide by dim), as torch: two passes, so no cancellation for large means.
      const r = tf.rsqrt(tf.add(tf.mean(tf.square(centered), -1, true), eps));
      return [tf.mul(centered, r), r];
    });
    (save as tf.GradSaveFunc)([normed, rstd, w as tf.Tensor]);
    return {
      value: tf.add(tf.mul(normed, w as tf.Tensor), b as tf.Tensor),
      gradFunc: (dy: tf.Tensor, [xhat, r, wi]: tf.Tensor[]) =>
        tf.tidy(() => {
          const dim = xhat.shape[xhat.rank - 1];
          const rows = (t: tf.Tensor) => tf.sum(tf.reshape(t, [-1, dim]), 0);
          // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight, means over the normalized axis.
          const g = tf.mul(dy, wi);
          const dx = tf.mul(
            r,
            tf.sub(tf.sub(g, tf.mean(g, -1, true)), tf.mul(xhat, tf.mean(tf.mul(g, xhat), -1, true))),
          );
          return [dx, rows(tf.mul(dy, xhat)), rows(dy)];
        }),
    };
  });
}

export class LayerNorm extends Layer {
  private readonly op: ReturnType<typeof layerNorm>;

  constructor(
    readonly dim: number,
    readonly eps = 1e-6,
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
