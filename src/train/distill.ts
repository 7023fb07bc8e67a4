/**
 * DeiT's knowledge distillation (facebookresearch/deit losses.py, DistillationLoss):
 *
 *   base = the base criterion on the class head only (label-smoothed CE, or soft-target CE
 *          when mixup / cutmix mixed the batch)
 *   hard: distill = CE(dist head, argmax of the teacher)                      (no smoothing)
 *   soft: distill = KL(log_softmax(dist / tau) || log_softmax(teacher / tau))
 *                   summed (log_target), * tau^2 / number of logit elements
 *   loss = (1 - alpha) * base + alpha * distill
 *
 * `type: none` is the base loss alone and loads no teacher, as in DeiT: the distillation head
 * then gets no gradient. Both terms are returned unweighted (`base_loss`, `distill_loss`) so
 * metrics.jsonl logs them next to the total.
 */
import * as tf from "@tensorflow/tfjs";
import type { Config, DistillConfig } from "../config/schema.js";
import { type Criterion, classificationCriterion, labelSmoothingCrossEntropy } from "./losses.js";
import { loadTeacher, type Teacher } from "./teacher.js";

/** DeiT soft distillation: `F.kl_div(log_softmax(s/T), log_softmax(t/T), reduction="sum", log_target=True) * T^2 / s.numel()`. */
export function softDistillationLoss(student: tf.Tensor2D, teacher: tf.Tensor2D, tau: number): tf.Scalar {
  return tf.tidy(() => {
    const logP = tf.logSoftmax(tf.div(student, tau));
    const logQ = tf.logSoftmax(tf.div(teacher, tau));
    const kl = tf.sum(tf.mul(tf.exp(logQ), tf.sub(logQ, logP)));
    return tf.div(tf.mul(kl, tau * tau), student.size) as tf.Scalar;
  });
}

/** DeiT hard distillation: `F.cross_entropy(s, t.argmax(dim=1))`. */
export function hardDistillationLoss(student: tf.Tensor2D, teacher: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => labelSmoothingCrossEntropy(student, tf.argMax(teacher, 1) as tf.Tensor1D, 0));
}

/** Wraps `base` with the distillation term; the step supplies the teacher's logits. */
export function distillationCriterion(
  base: Criterion,
  d: Pick<DistillConfig, "type" | "alpha" | "tau">,
): Criterion {
  if (d.type === "none") return base;
  return (input) => {
    const { output, teacherLogits } = input;
    if (output instanceof tf.Tensor) {
      throw new Error(
        "distillation needs a distilled student (model.distilled: true) that returns two heads",
      );
    }
    if (!teacherLogits) throw new Error("distillation needs the teacher's logits for the batch");
    const baseLoss = base(input).loss;
    const distill =
      d.type === "soft"
        ? softDistillationLoss(output.distLogits, teacherLogits, d.tau)
        : hardDistillationLoss(output.distLogits, teacherLogits);
    return {
      loss: tf.add(tf.mul(baseLoss, 1 - d.alpha), tf.mul(distill, d.alpha)) as tf.Scalar,
      terms: { base_loss: baseLoss, distill_loss: distill },
    };
  };
}

export interface TrainingCriterion {
  criterion: Criterion;
  /** The teacher the step runs on each batch, or null without distillation. */
  teacher: Teacher | null;
}

/**
 * The loss `vit train` minimises: the base criterion, wrapped for distillation when the config
 * asks for it. The teacher is loaded (and checked against the student's classes) here, before
 * the run folder exists, so a wrong teacher fails fast.
 */
export async function trainingCriterion(cfg: Config, classes: readonly string[]): Promise<TrainingCriterion> {
  const base = classificationCriterion(cfg.train.label_smoothing);
  const d = cfg.distill;
  if (!d || d.type === "none") return { criterion: base, teacher: null };
  const teacher = await loadTeacher(d.teacher, {
    classes,
    imgSize: cfg.model.img_size,
    inChans: cfg.model.in_chans,
    mean: cfg.data.mean,
    std: cfg.data.std,
  });
  return { criterion: distillationCriterion(base, d), teacher };
}
