/**
 * The Classifier on onnxruntime: the model's eval-mode ONNX graph (src/engines/onnxruntime/
 * inference.ts) in one InferenceSession, on the loader's channels-last images as they are. The
 * session holds its own copy of the weights, so the tfjs model is freed once the graph is built.
 */
import type { VisionTransformer } from "../../model/vision_transformer.js";
import type { Classifier, Logits } from "../classifier.js";
import type { OnnxruntimeChoice } from "../select.js";
import { inferenceModel } from "./inference.js";
import { createSession } from "./runtime.js";

export async function onnxruntimeClassifier(
  choice: OnnxruntimeChoice,
  model: VisionTransformer,
): Promise<Classifier> {
  const { cfg, numClasses } = model;
  let graph: ReturnType<typeof inferenceModel>;
  try {
    // Both heads of a distilled model, for eval's per-head report; their mean is taken here.
    graph = inferenceModel(cfg, { weights: model.stateDict(), heads: "both" });
  } finally {
    model.dispose();
  }
  const session = await createSession(choice.ort, graph.bytes, choice);
  const { img_size: s, in_chans: c } = cfg;
  return {
    cfg,
    numClasses,
    async predictLogits(images, batch) {
      const x = new choice.ort.Tensor("float32", images.subarray(0, batch * s * s * c), [batch, s, s, c]);
      const out = await session.run({ [graph.input]: x });
      const [head, dist] = graph.outputs.map((name) => out[name].data as Float32Array);
      if (dist === undefined) return { logits: head };
      // timm's eval: (x + x_dist) / 2, in float32 as the export graph computes it.
      const logits = head.map((h, i) => (h + dist[i]) / 2);
      return { logits, heads: { head, head_dist: dist } } satisfies Logits;
    },
    async dispose() {
      await session.release();
    },
  };
}
