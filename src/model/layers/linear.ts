/** torch.nn.Linear: weight `[out, in]` (PyTorch layout), y = x W^T + b over the last axis. */
import * as tf from "@tensorflow/tfjs";
import { Layer } from "../module.js";
import { customOp } from "./custom_op.js";

// y = x W^T, with the backward written out so that all three products are plain 2-D products and the
// transposes are separate ops: tfjs-backend-wasm sends only untransposed products to XNNPACK, and the
// transposed ones tfjs's own matMul gradient uses run a scalar loop 10-15x slower (bench/README.md).
// A transpose costs a few percent of its product, on every backend.
// The bias is added by the product's own kernel: one op and no [M, out] intermediate (on wasm no faster
// than matMul + add, bench/README.md, and no slower).
const product = (x: tf.Tensor, w: tf.Tensor, bias?: tf.Tensor) =>
  tf.fused.matMul({ a: x as tf.Tensor2D, b: tf.transpose(w) as tf.Tensor2D, bias });

/**
 * [dx, dW]: dx = dy W, and dW = dy^T x or (x^T dy)^T, whichever makes the product's right operand the
 * narrower of x and dy: XNNPACK repacks the right operand of every product, and packing a wide [M, 768]
 * one costs about a third of the product (bench/README.md). With a bias, db: a sum of dy over rows.
 */
function productGrads(dy: tf.Tensor, x: tf.Tensor, w: tf.Tensor, bias: boolean): tf.Tensor[] {
  const dx = tf.matMul(dy, w);
  if (x.shape[x.rank - 1] > dy.shape[dy.rank - 1]) {
    const dW = tf.transpose(tf.matMul(tf.transpose(x), dy));
    return bias ? [dx, dW, tf.sum(dy, 0)] : [dx, dW];
  }
  const dyT = tf.transpose(dy);
  // The bias gradient as a sum over the last axis of dy^T: wasm's sum over the first axis transposes first.
  return bias ? [dx, tf.matMul(dyT, x), tf.sum(dyT, -1)] : [dx, tf.matMul(dyT, x)];
}

const linearBias = customOp(
  (x, w, b) => ({ value: product(x, w, b), save: [x, w] }),
  (dy, [x, w]) => productGrads(dy, x, w, true),
);

const linearNoBias = customOp(
  (x, w) => ({ value: product(x, w), save: [x, w] }),
  (dy, [x, w]) => productGrads(dy, x, w, false),
);

/**
 * `x [M, in] -> [M, out]` with a PyTorch-layout weight. Every matMul against a weight goes through
 * here (Linear and the patch embedding), so there is one place to tune it per backend.
 */
export function linear(x: tf.Tensor2D, weight: tf.Tensor2D, bias: tf.Tensor1D | null): tf.Tensor2D {
  return (bias ? linearBias(x, weight, bias) : linearNoBias(x, weight)) as tf.Tensor2D;
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
