/**
 * The Classifier on onnxruntime: the model's ONNX graph (the one `vit export` writes) in one
 * InferenceSession. The session holds its own copy of the weights, so the tfjs model is freed as
 * soon as the graph is built.
 */
import { exportOnnx } from "../../io/onnx.js";
import type { VisionTransformer } from "../../model/vision_transformer.js";
import type { Classifier } from "../classifier.js";
import type { OnnxruntimeChoice } from "../select.js";
import { createSession } from "./runtime.js";

export async function onnxruntimeClassifier(
  choice: OnnxruntimeChoice,
  model: VisionTransformer,
): Promise<Classifier> {
  const { cfg, numClasses } = model;
  let graph: Uint8Array;
  try {
    graph = exportOnnx(model.stateDict(), cfg);
  } finally {
    model.dispose();
  }
  const session = await createSession(choice.ort, graph, choice);
  const { img_size: s, in_chans: c } = cfg;
  return {
    cfg,
    numClasses,
    async predictLogits(images, batch) {
      const x = new choice.ort.Tensor("float32", channelsFirst(images, batch, s, s, c), [batch, c, s, s]);
      const out = await session.run({ pixel_values: x });
      x.dispose();
      const logits = out.logits.data as Float32Array;
      out.logits.dispose();
      return { logits };
    },
    async dispose() {
      await session.release();
    },
  };
}

/** [B, H, W, C] -> [B, C, H, W]: the loader makes channels-last images, the graph takes PyTorch's layout. */
function channelsFirst(x: Float32Array, b: number, h: number, w: number, c: number): Float32Array {
  if (c === 1) return x;
  const out = new Float32Array(x.length);
  const plane = h * w;
  for (let n = 0; n < b; n++) {
    const src = n * plane * c;
    for (let ch = 0; ch < c; ch++) {
      const dst = (n * c + ch) * plane;
      for (let p = 0; p < plane; p++) out[dst + p] = x[src + p * c + ch];
    }
  }
  return out;
}
