/**
 * Sessions of the training engine, and a fixed-weight model's eval-mode logits on onnxruntime
 * (a distillation teacher that is a vit run or checkpoint runs on the student's engine).
 */
import * as os from "node:os";
import type * as Ort from "onnxruntime-node";
import type { VitConfig } from "../../model/vision_transformer.js";
import type { StateDict } from "../../tensor.js";
import { deviceSessionOptions, type RunDevice } from "./device.js";
import { inferenceModel } from "./inference.js";

/** onnxruntime-node, loaded by the caller (an optional dependency: imported only when chosen). */
export type OrtModule = typeof Ort;

/**
 * The whole graph on one intra-op pool (the ViT is a chain: nothing to run side by side), on
 * `device`. A training graph runs without a memory pattern: the pattern reserves one block for
 * every activation kept for the backward pass on top of the arena, and without it vit_tiny's
 * training peak RSS fell from 2.9 GB to 1.7 GB at the same speed (npm run bench); inference keeps it.
 */
export function sessionOptions(
  threads: number | null,
  device: RunDevice = "cpu",
  { training = false } = {},
): Ort.InferenceSession.SessionOptions {
  return {
    ...deviceSessionOptions(device),
    graphOptimizationLevel: "all",
    intraOpNumThreads: threads ?? os.availableParallelism(),
    interOpNumThreads: 1,
    executionMode: "sequential",
    enableMemPattern: !training,
  };
}

export interface FixedModel {
  /** Eval-mode logits [size, K] of images [size, H, W, C] (a distilled model: the mean of its heads). */
  logits(images: Float32Array, size: number): Promise<Float32Array>;
  release(): Promise<void>;
}

export async function fixedModel(
  ort: OrtModule,
  cfg: VitConfig,
  weights: StateDict,
  threads: number | null,
  device: RunDevice = "cpu",
): Promise<FixedModel> {
  const model = inferenceModel(cfg, { weights, heads: "mean" });
  const session = await ort.InferenceSession.create(model.bytes, sessionOptions(threads, device));
  const { img_size: S, in_chans: C } = cfg;
  return {
    async logits(images, size) {
      const out = await session.run({ [model.input]: new ort.Tensor("float32", images, [size, S, S, C]) });
      return out[model.outputs[0]].data as Float32Array;
    },
    release: () => session.release(),
  };
}
