/** The TrainState a run steps, built from its model and the `train` config (the loop and the benchmark). */
import type { TrainConfig } from "../config/schema.js";
import type { Criterion } from "./losses.js";
import { createOptimizer } from "./optimizer.js";
import { makeSchedule } from "./schedule.js";
import type { TrainableModel, TrainState } from "./step.js";
import type { Teacher } from "./teacher.js";

export interface TrainStateSpec {
  criterion: Criterion;
  teacher?: Teacher | null;
  /** Optimizer steps per epoch (loader batches / accum_steps), for the schedule. */
  stepsPerEpoch: number;
  /** [H, W, C] of one image. */
  inputShape: [number, number, number];
  numClasses: number;
}

/** Without EMA: the loop attaches it once the EMA model's weights are known (fresh or resumed). */
export function createTrainState(
  model: TrainableModel & { noWeightDecay(): Set<string> },
  train: TrainConfig,
  spec: TrainStateSpec,
): TrainState {
  const params = model.namedParameters();
  return {
    model,
    params,
    optimizer: createOptimizer(params, train.optimizer, model.noWeightDecay()),
    criterion: spec.criterion,
    teacher: spec.teacher ?? null,
    schedule: makeSchedule({
      schedule: train.schedule,
      baseLr: train.optimizer.lr,
      epochs: train.epochs,
      stepsPerEpoch: spec.stepsPerEpoch,
    }),
    clipGradNorm: train.clip_grad_norm,
    ema: null,
    inputShape: spec.inputShape,
    numClasses: spec.numClasses,
    seed: train.seed,
    accumSteps: train.accum_steps,
  };
}
