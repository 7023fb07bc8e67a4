/** torch.nn.Dropout: zero each element with probability `rate` in training, scale the rest by 1/(1-rate). */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../../random.js";
import { type ForwardContext, Identity, Layer } from "../module.js";

/** A `size`-element mask of 0 and 1/keep drawn from `rng`: the one Bernoulli draw dropout and drop path share. */
export function keepMask(size: number, keep: number, rng: Rng): Float32Array {
  const mask = new Float32Array(size);
  const scale = 1 / keep;
  for (let i = 0; i < size; i++) mask[i] = rng.uniform() < keep ? scale : 0;
  return mask;
}

export class Dropout extends Layer {
  constructor(readonly rate: number) {
    super();
  }

  forward(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    if (!ctx.training) return x;
    return tf.mul(x, tf.tensor(keepMask(x.size, 1 - this.rate, ctx.nextRng()), x.shape));
  }
}

/** Dropout, or an identity when the rate is 0. */
export function dropout(rate: number): Layer {
  return rate > 0 ? new Dropout(rate) : new Identity();
}
