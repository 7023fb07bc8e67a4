/**
 * Classification losses with timm's definitions. Both return the batch mean as a scalar.
 */
import * as tf from "@tensorflow/tfjs";
import type { ModelOutput } from "../model/vision_transformer.js";

/**
 * timm LabelSmoothingCrossEntropy: (1 - s) * NLL(target) + s * mean over classes of -log p.
 * The smoothing mass s is spread over all K classes, the target included.
 */
export function labelSmoothingCrossEntropy(
  logits: tf.Tensor2D,
  labels: tf.Tensor1D,
  smoothing: number,
): tf.Scalar {
  return tf.tidy(() => {
    const logProbs = tf.logSoftmax(logits); // [B, K]
    const oneHot = tf.oneHot(tf.cast(labels, "int32"), logits.shape[1]);
    const nll = tf.neg(tf.sum(tf.mul(logProbs, oneHot), -1)); // [B]
    if (smoothing === 0) return tf.mean(nll);
    const smooth = tf.neg(tf.mean(logProbs, -1)); // [B]
    return tf.mean(tf.add(tf.mul(nll, 1 - smoothing), tf.mul(smooth, smoothing)));
  });
}

/** timm SoftTargetCrossEntropy: sum over classes of -target * log p (mixup / cutmix targets). */
export function softTargetCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.neg(tf.sum(tf.mul(targets, tf.logSoftmax(logits)), -1))));
}

export interface CriterionInput {
  /** The batch exactly as the model saw it (after mixup / cutmix). */
  images: tf.Tensor4D;
  output: ModelOutput;
  /** Hard labels [B]. */
  labels: tf.Tensor1D;
  /** Soft targets [B, K] from mixup / cutmix (smoothing already folded in), or null. */
  targets: tf.Tensor2D | null;
  /** A distillation teacher's logits [B, K] for `images`, computed before the gradient tape (src/train/distill.ts). */
  teacherLogits?: tf.Tensor2D | null;
}

/** `loss` is what gets minimised; `terms` are extra scalars logged by name (e.g. a distillation term). */
export interface CriterionResult {
  loss: tf.Scalar;
  terms?: Record<string, tf.Scalar>;
}

export type Criterion = (input: CriterionInput) => CriterionResult;

export function classLogits(output: ModelOutput): tf.Tensor2D {
  return output instanceof tf.Tensor ? output : output.logits;
}

/**
 * The base loss of timm / DeiT training: soft-target CE when the batch carries mixed targets,
 * label-smoothed CE otherwise. A distilled model is scored on its class head only (DeiT's
 * DistillationLoss with no teacher); a distillation criterion wraps this one.
 */
export function classificationCriterion(smoothing: number): Criterion {
  return ({ output, labels, targets }) => {
    const logits = classLogits(output);
    return {
      loss: targets
        ? softTargetCrossEntropy(logits, targets)
        : labelSmoothingCrossEntropy(logits, labels, smoothing),
    };
  };
}
