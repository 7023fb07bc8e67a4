/**
 * The attention probabilities of every block, read through the model's capture hook (the
 * output of `blocks.N.attn.attn_drop`, which in eval mode is softmax(q k^T * scale) itself),
 * alongside the logits of the same forward pass.
 */
import type * as tf from "@tensorflow/tfjs";
import type { VisionTransformer } from "../model/vision_transformer.js";
import type { LayerAttention } from "./rollout.js";

const ATTN_PROBS = /^blocks\.(\d+)\.attn\.attn_drop$/;

export interface AttentionPass {
  /** `[B, K]` row-major (a distilled model: the mean of both heads, its prediction). */
  logits: Float32Array;
  /** `attention[image][layer]`, layers in block order. */
  attention: LayerAttention[][];
}

export function forwardWithAttention(model: VisionTransformer, x: tf.Tensor4D): AttentionPass {
  const batch = x.shape[0];
  const layers: LayerAttention[][] = Array.from({ length: batch }, () => []);
  const logits = model.forward(x, {
    training: false,
    capture: (name, output) => {
      const m = ATTN_PROBS.exec(name);
      if (!m) return;
      const [b, heads, tokens] = output.shape; // [B, heads, T, T]
      // Read now: the tensor belongs to the forward pass's tidy scope.
      const data = output.dataSync() as Float32Array;
      const size = heads * tokens * tokens;
      for (let i = 0; i < b; i++) {
        layers[i][Number(m[1])] = { heads, tokens, data: data.slice(i * size, (i + 1) * size) };
      }
    },
  }) as tf.Tensor2D;
  const values = logits.dataSync() as Float32Array;
  logits.dispose();
  return { logits: values.slice(), attention: layers };
}
