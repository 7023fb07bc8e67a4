/** The Classifier on tfjs: the model's eval-mode forward pass on the active tfjs backend. */
import * as tf from "@tensorflow/tfjs";
import type { VisionTransformer } from "../../model/vision_transformer.js";
import type { Classifier, Logits } from "../classifier.js";

export function tfjsClassifier(model: VisionTransformer): Classifier {
  const { img_size: s, in_chans: c, distilled } = model.cfg;
  return {
    cfg: model.cfg,
    numClasses: model.numClasses,
    async predictLogits(images, batch) {
      const heads = new Map<string, Float32Array>();
      const x = tf.tensor4d(images.subarray(0, batch * s * s * c), [batch, s, s, c]);
      const logits = model.forward(x, {
        training: false,
        // Read inside the forward pass: the heads' outputs are freed when it returns.
        capture: distilled
          ? (name, out) => {
              if (name === "head" || name === "head_dist")
                heads.set(name, (out.dataSync() as Float32Array).slice());
            }
          : undefined,
      }) as tf.Tensor2D;
      x.dispose();
      const out: Logits = { logits: (await logits.data()) as Float32Array };
      logits.dispose();
      if (distilled) out.heads = { head: heads.get("head")!, head_dist: heads.get("head_dist")! };
      return out;
    },
    async dispose() {
      model.dispose();
    },
  };
}
