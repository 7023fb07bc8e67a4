/**
 * The one interface the loop runs its steps and validation through, whichever engine computes
 * them: tfjs (./step.ts, on the model's variables) or onnxruntime (src/engines/onnxruntime/
 * trainer.ts: one session.run per step, parameters in and out).
 *
 * On onnxruntime the parameters stay in the model's tfjs variables (tfjs's cpu backend: host
 * Float32Arrays, handed to onnxruntime without a copy), so checkpoints, EMA, pretrained loading
 * and --resume read and write them as on tfjs; the optimizer state is the trainer's host arrays
 * behind the same Optimizer interface.
 */
import * as tf from "@tensorflow/tfjs";
import type { Config } from "../config/index.js";
import type { DataLoader } from "../data/loader.js";
import type { RunDevice } from "../engines/onnxruntime/device.js";
import { type FixedModel, fixedModel, type OrtModule } from "../engines/onnxruntime/session.js";
import { OrtTrainer } from "../engines/onnxruntime/trainer.js";
import { tfjsClassifier } from "../engines/tfjs/classifier.js";
import { evaluate } from "../eval/evaluate.js";
import { addBatch, emptyTally, type Summary, summarize } from "../metrics/classification.js";
import type { VisionTransformer } from "../model/vision_transformer.js";
import type { OptimizerState } from "../weights/checkpoint.js";
import { type Optimizer, paramGroups } from "./optimizer.js";
import { type MicroBatch, microBatchSeed, type StepResult, type TrainState, trainStep } from "./step.js";

export interface StepEngine {
  /** For the start-up summary. */
  readonly name: string;
  /** One optimizer step over the micro-batches of step `step` (EMA updated after it). */
  step(batches: readonly MicroBatch[], step: number): Promise<StepResult>;
  /** Val top-1/top-5/loss of `model`'s current weights. */
  validate(model: VisionTransformer, loader: DataLoader): Promise<Summary>;
  dispose(): Promise<void>;
}

/** The engine `vit train` runs on: tfjs unless onnxruntime was chosen (its loaded module and threads). */
export type EngineSpec =
  | { engine: "tfjs" }
  | { engine: "onnxruntime"; ort: OrtModule; threads: number | null; device?: RunDevice };

export function tfjsStepEngine(state: TrainState): StepEngine {
  return {
    name: "tfjs",
    step: async (batches, step) => trainStep(state, batches, step),
    // Not disposed: the classifier is a view of the training model, which the loop owns.
    validate: async (model, loader) => (await evaluate(tfjsClassifier(model), loader)).summary,
    dispose: async () => {},
  };
}

/**
 * The onnxruntime step for `state` (built by createTrainState): replaces its optimizer with the
 * trainer's, whose state saves and loads under the same names.
 */
export function onnxruntimeStepEngine(
  state: TrainState,
  model: VisionTransformer,
  cfg: Config,
  spec: { ort: OrtModule; threads: number | null; device?: RunDevice },
): StepEngine {
  state.optimizer.dispose();
  const noWeightDecay = model.noWeightDecay();
  const trainer = new OrtTrainer(
    spec.ort,
    {
      model: model.cfg,
      optimizer: cfg.train.optimizer,
      noWeightDecay,
      clipGradNorm: cfg.train.clip_grad_norm,
      labelSmoothing: cfg.train.label_smoothing,
      distill: cfg.distill ?? null,
      threads: spec.threads,
      device: spec.device,
    },
    model.paramShapes(),
  );
  state.optimizer = trainerOptimizer(trainer, state, cfg, noWeightDecay);
  const hostParams = (m: VisionTransformer) =>
    new Map(m.namedParameters().map(([name, v]) => [name, v.dataSync() as Float32Array]));
  const [h, w, c] = state.inputShape;
  // A vit teacher runs on onnxruntime too, on the same device (its input adapter, a resize or
  // re-normalization, on tfjs).
  let teacher: Promise<FixedModel> | null = null;
  const teacherVit = state.teacher?.vit;
  const teacherLogits = async (b: MicroBatch): Promise<Float32Array> => {
    if (!teacherVit) return tfjsTeacherLogits(state, b, [h, w, c]);
    teacher ??= fixedModel(
      spec.ort,
      teacherVit.model.cfg,
      teacherVit.model.stateDict(),
      spec.threads,
      spec.device,
    );
    const images = tf.tidy(() => teacherVit.adapt(tf.tensor4d(b.images, [b.size, h, w, c])));
    const adapted = images.dataSync() as Float32Array;
    images.dispose();
    return (await teacher).logits(adapted, b.size);
  };
  return {
    name: "onnxruntime",
    async step(batches, step) {
      const lr = state.schedule(step);
      const micro = [];
      for (const [i, b] of batches.entries()) {
        const logits = state.teacher ? await teacherLogits(b) : null;
        micro.push({ ...b, seed: microBatchSeed(state, step, i), teacherLogits: logits });
      }
      const r = await trainer.step(hostParams(model), micro, lr);
      for (const [name, v] of state.params) {
        const data = r.params.get(name);
        if (data) tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
      }
      state.ema?.update();
      return {
        loss: tf.scalar(r.loss),
        gradNorm: tf.scalar(r.gradNorm),
        terms: Object.fromEntries(Object.entries(r.terms).map(([k, x]) => [k, tf.scalar(x)])),
        lr,
      };
    },
    async validate(m, loader) {
      const tally = emptyTally(m.numClasses);
      const params = hostParams(m);
      for await (const batch of loader.epoch(0)) {
        addBatch(tally, await trainer.logits(params, batch.images, batch.size), batch.labels);
      }
      return summarize(tally);
    },
    dispose: async () => {
      await trainer.release();
      await (await teacher)?.release();
    },
  };
}

/** A teacher that is not a vit model (a TensorFlow.js model) answers on tfjs. */
function tfjsTeacherLogits(state: TrainState, b: MicroBatch, [h, w, c]: number[]): Float32Array {
  return tf.tidy(() => {
    const images = tf.tensor4d(b.images, [b.size, h, w, c]);
    return (state.teacher!.logits(images).dataSync() as Float32Array).slice();
  });
}

/** The trainer's state behind the Optimizer interface the checkpoints and the summary use. */
function trainerOptimizer(
  trainer: OrtTrainer,
  state: TrainState,
  cfg: Config,
  noWeightDecay: ReadonlySet<string>,
): Optimizer {
  return {
    name: cfg.train.optimizer.name,
    groups: paramGroups(state.params, noWeightDecay),
    apply: () => {
      throw new Error("the onnxruntime engine updates the parameters inside its step graph");
    },
    exportState: (): OptimizerState => trainer.exportState(),
    importState: (s: OptimizerState) => trainer.importState(s),
    dispose: () => {},
  };
}
