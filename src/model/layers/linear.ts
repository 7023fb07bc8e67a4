/** torch.nn.Linear: weight `[out, in]` (PyTorch layout), y = x W^T + b over the last axis. */
import * as tf from "@tensorflow/tfjs";
import { Layer } from "../module.js";

/**
 * `x [M, in] -> [M, out]` with a PyTorch-layout weight. Every matMul against a weight goes through
 * here (Linear and the patch embedding), so there is one place to tune it per backend.
 */
export function linear(x: tf.Tensor2D, weight: tf.Tensor2D, bias: tf.Tensor1D | null): tf.Tensor {
  const y = tf.matMul(x, weight, false, true);
  return bias ? tf.add(y, bias) : y;
}

export class Linear extends Layer {
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly bias = true,
  ) {
    super();
    this.addParam("weight", [outFeatures, inFeatures], "linear", inFeatures);
    if (bias) this.addParam("bias", [outFeatures], "linear", inFeatures);
  }

  /** `[..., in] -> [..., out]` */
  forward(x: tf.Tensor): tf.Tensor {
    const lead = x.shape.slice(0, -1);
    const y = linear(
      tf.reshape(x, [-1, this.inFeatures]),
      this.param("weight") as tf.Tensor2D,
      this.bias ? (this.param("bias") as tf.Tensor1D) : null,
    );
    return tf.reshape(y, [...lead, this.outFeatures]);
  }
}
