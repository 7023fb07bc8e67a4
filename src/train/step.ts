/**
 * One optimizer step as a pure function of (state, micro-batches, step): forward and backward
 * per micro-batch, gradients summed, clipped, applied, EMA updated. Results stay on the device
 * as tensors; the loop decides when to read them, because reading forces a sync.
 */
import * as tf from "@tensorflow/tfjs";
import type { ModelOutput } from "../model/vision_transformer.js";
import type { ModelEma } from "./ema.js";
import { addGrads, clipByGlobalNorm } from "./grads.js";
import type { Criterion } from "./losses.js";
import type { GradMap, NamedVariable, Optimizer } from "./optimizer.js";
import type { LrSchedule } from "./schedule.js";
import type { Teacher } from "./teacher.js";

/** The part of VisionTransformer the step needs. */
export interface TrainableModel {
  forward(x: tf.Tensor4D, opts: { training: boolean; seed?: number }): ModelOutput;
  namedParameters(): NamedVariable[];
}

/** One loader batch, possibly mixed. */
export interface MicroBatch {
  /** [size, H, W, C], normalized. */
  images: Float32Array;
  labels: Int32Array;
  size: number;
  /** [size, K] soft targets from mixup / cutmix, or absent for hard labels. */
  targets?: Float32Array | null;
}

export interface TrainState {
  model: TrainableModel;
  params: NamedVariable[];
  optimizer: Optimizer;
  criterion: Criterion;
  /** A distillation teacher, run on each micro-batch before the gradient tape starts. */
  teacher?: Teacher | null;
  schedule: LrSchedule;
  clipGradNorm: number | null;
  ema: ModelEma | null;
  /** [H, W, C] of one image. */
  inputShape: [number, number, number];
  numClasses: number;
  seed: number;
  /** Micro-batches per optimizer step; fixes each micro-batch's dropout seed. */
  accumSteps: number;
}

export interface Gradients {
  grads: GradMap;
  loss: tf.Scalar;
  terms: Record<string, tf.Scalar>;
}

export interface StepResult {
  loss: tf.Scalar;
  gradNorm: tf.Scalar;
  terms: Record<string, tf.Scalar>;
  lr: number;
}

/** Dropout and drop-path draws depend only on (seed, step, micro-batch): a resumed run repeats them. */
export function microBatchSeed(
  state: Pick<TrainState, "seed" | "accumSteps">,
  step: number,
  i: number,
): number {
  return state.seed + step * state.accumSteps + i;
}

/**
 * Gradients of the loss over all micro-batches, each weighted by its share of the images, so
 * accumulating k micro-batches gives the gradient of one batch k times larger.
 */
export function computeGradients(state: TrainState, batches: readonly MicroBatch[], step: number): Gradients {
  const total = batches.reduce((n, b) => n + b.size, 0);
  const vars = state.params.map(([, v]) => v);
  const paramName = new Map(state.params.map(([name, v]) => [v.name, name]));
  const [h, w, c] = state.inputShape;
  let grads: GradMap | null = null;
  let loss = tf.scalar(0);
  const terms: Record<string, tf.Scalar> = {};
  batches.forEach((batch, i) => {
    const weight = batch.size / total;
    const kept: Record<string, tf.Scalar> = {};
    const images = tf.tensor4d(batch.images, [batch.size, h, w, c]);
    // Outside variableGrads: no gradient can reach the teacher and the tape keeps none of its activations.
    const teacherLogits = state.teacher?.logits(images) ?? null;
    const result = tf.variableGrads(() => {
      const labels = tf.tensor1d(batch.labels, "int32");
      const targets = batch.targets ? tf.tensor2d(batch.targets, [batch.size, state.numClasses]) : null;
      const output = state.model.forward(images, { training: true, seed: microBatchSeed(state, step, i) });
      const r = state.criterion({ images, output, labels, targets, teacherLogits });
      // Extra terms are not the gradient's target; keep them past variableGrads' internal tidy.
      for (const [k, t] of Object.entries(r.terms ?? {})) kept[k] = tf.keep(tf.mul(t, weight));
      return tf.mul(r.loss, weight) as tf.Scalar;
    }, vars);
    images.dispose();
    teacherLogits?.dispose();
    const named: GradMap = new Map();
    for (const [vname, g] of Object.entries(result.grads)) named.set(paramName.get(vname)!, g);
    grads = addGrads(grads, named);
    const prevLoss = loss;
    loss = tf.add(loss, result.value);
    prevLoss.dispose();
    result.value.dispose();
    for (const [k, t] of Object.entries(kept)) {
      const prev = terms[k];
      terms[k] = prev ? tf.add(prev, t) : t;
      if (prev) {
        prev.dispose();
        t.dispose();
      }
    }
  });
  return { grads: grads ?? new Map(), loss, terms };
}

export function trainStep(state: TrainState, batches: readonly MicroBatch[], step: number): StepResult {
  const lr = state.schedule(step);
  const { loss, gradNorm, terms } = tf.tidy(() => {
    const g = computeGradients(state, batches, step);
    const { grads, norm } = clipByGlobalNorm(g.grads, state.clipGradNorm);
    state.optimizer.apply(grads, lr);
    return { loss: g.loss, gradNorm: norm, terms: g.terms };
  });
  state.ema?.update();
  return { loss, gradNorm, terms, lr };
}

export function disposeStepResult(r: StepResult): void {
  tf.dispose([r.loss, r.gradNorm, ...Object.values(r.terms)]);
}
