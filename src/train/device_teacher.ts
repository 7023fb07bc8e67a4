/**
 * A framework teacher on the onnxruntime engine's device: its eval graph (a distilled teacher:
 * the mean of its heads) with the weights fixed, in one session on the student's device, so
 * distillation on a GPU does not run the teacher's forward on the host. The input adapter (student
 * -> teacher normalization and size) stays on tfjs's cpu backend: elementwise work and a resize.
 * A TensorFlow.js teacher has no ONNX graph and stays on tfjs.
 */
import * as tf from "@tensorflow/tfjs";
import type { RunDevice } from "../engines/onnxruntime/device.js";
import { inferenceModel } from "../engines/onnxruntime/inference.js";
import { createSession, type OrtModule } from "../engines/onnxruntime/runtime.js";
import { defaultThreads } from "../engines/tfjs/select.js";
import type { Teacher } from "./teacher.js";

export interface DeviceTeacher {
  /** Teacher logits [size, K] for the student's batch [size, H, W, C]. */
  logits(images: Float32Array, size: number, shape: readonly number[]): Promise<Float32Array>;
  release(): Promise<void>;
}

export function deviceTeacher(
  vit: NonNullable<Teacher["vit"]>,
  spec: { ort: OrtModule; threads: number | null; device?: RunDevice },
): DeviceTeacher {
  const { model, adapt } = vit;
  const graph = inferenceModel(model.cfg, { weights: model.stateDict(), heads: "mean" });
  const session = createSession(spec.ort, graph.bytes, {
    threads: spec.threads ?? defaultThreads(),
    device: spec.device ?? "cpu",
  });
  return {
    async logits(images, size, [h, w, c]) {
      const adapted = tf.tidy(() => adapt(tf.tensor4d(images, [size, h, w, c])));
      const x = new spec.ort.Tensor("float32", adapted.dataSync() as Float32Array, adapted.shape);
      adapted.dispose();
      const out = await (await session).run({ [graph.input]: x });
      return out[graph.outputs[0]].data as Float32Array;
    },
    release: async () => (await session).release(),
  };
}
