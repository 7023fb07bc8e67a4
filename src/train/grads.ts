/**
 * Gradient bookkeeping between the backward pass and the optimizer: summing micro-batch
 * gradients (accumulation) and clipping by global norm. Callers run these inside tf.tidy.
 */
import * as tf from "@tensorflow/tfjs";
import type { GradMap } from "./optimizer.js";

/** sum += add, key by key; the previous sums are disposed so memory stays at one set of gradients. */
export function addGrads(sum: GradMap | null, add: GradMap): GradMap {
  if (sum === null) return add;
  const out: GradMap = new Map();
  for (const [name, g] of add) {
    const prev = sum.get(name);
    out.set(name, prev ? tf.add(prev, g) : g);
    if (prev) {
      prev.dispose();
      g.dispose();
    }
  }
  for (const [name, g] of sum) if (!out.has(name)) out.set(name, g);
  return out;
}

/** sqrt of the sum of squares of every gradient element: torch clip_grad_norm_'s total_norm. */
export function globalNorm(grads: GradMap): tf.Scalar {
  return tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))) as tf.Scalar);
}

/**
 * torch.nn.utils.clip_grad_norm_: scale every gradient by min(1, maxNorm / (norm + 1e-6)).
 * Returns the norm before clipping. maxNorm null leaves the gradients as they are.
 */
export function clipByGlobalNorm(
  grads: GradMap,
  maxNorm: number | null,
): { grads: GradMap; norm: tf.Scalar } {
  const norm = globalNorm(grads);
  if (maxNorm === null) return { grads, norm };
  const coef = tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1);
  const clipped: GradMap = new Map();
  for (const [name, g] of grads) clipped.set(name, tf.mul(g, coef));
  return { grads: clipped, norm };
}
