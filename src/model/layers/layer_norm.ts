/** torch.nn.LayerNorm over the last axis with timm's eps 1e-6 (tfjs' own layer defaults to 1e-3). */
import * as tf from "@tensorflow/tfjs";
import { Layer } from "../module.js";

export class LayerNorm extends Layer {
  constructor(
    readonly dim: number,
    readonly eps = 1e-6,
  ) {
    super();
    this.addParam("weight", [dim], "norm");
    this.addParam("bias", [dim], "norm");
  }

  forward(x: tf.Tensor): tf.Tensor {
    const mean = tf.mean(x, -1, true);
    const centered = tf.sub(x, mean);
    // Biased variance (divide by dim), as torch: two passes, so no cancellation for large means.
    const variance = tf.mean(tf.square(centered), -1, true);
    const normed = tf.mul(centered, tf.rsqrt(tf.add(variance, this.eps)));
    return tf.add(tf.mul(normed, this.param("weight")), this.param("bias"));
  }
}
