/**
 * Stochastic depth (timm's DropPath): in training, drop a residual branch for a whole sample with
 * probability `rate` and scale the kept samples by 1/(1-rate).
 */
import * as tf from "@tensorflow/tfjs";
import { type ForwardContext, Identity, Layer } from "../module.js";
import { customOp } from "./custom_op.js";
import { keepMask } from "./dropout.js";

/** x * mask as a custom op that saves only the mask (tfjs's mul would also keep x for the backward pass). */
const scaleBy = (mask: tf.Tensor) =>
  customOp(
    (x) => ({ value: tf.mul(x, mask), save: [mask] }),
    (dy, [m]) => [tf.mul(dy, m)],
  );

export class DropPath extends Layer {
  constructor(readonly rate: number) {
    super();
  }

  forward(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    if (!ctx.training) return x;
    const batch = x.shape[0];
    // One draw per sample, broadcast over the sample's tokens and channels: [B, 1, ..., 1].
    const mask = tf.tensor(keepMask(batch, 1 - this.rate, ctx.nextRng()), [
      batch,
      ...x.shape.slice(1).map(() => 1),
    ]);
    return scaleBy(mask)(x);
  }
}

/** DropPath, or an identity when the rate is 0. */
export function dropPath(rate: number): Layer {
  return rate > 0 ? new DropPath(rate) : new Identity();
}

/** timm's per-block schedule: rates rising linearly from 0 to `rate` over `depth` blocks. */
export function dropPathRates(rate: number, depth: number): number[] {
  return Array.from({ length: depth }, (_, i) => (depth > 1 ? (rate * i) / (depth - 1) : 0));
}
