/**
 * What eval, predict (and serve, on predict's path) need from an engine: logits for a batch of
 * images. One interface, so those layers never learn which engine runs the model.
 */
import type { VisionTransformer, VitConfig } from "../model/vision_transformer.js";
import { onnxruntimeClassifier } from "./onnxruntime/classifier.js";
import type { EngineChoice } from "./select.js";
import { tfjsClassifier } from "./tfjs/classifier.js";

export interface Logits {
  /** [batch, numClasses], row-major: the model's prediction (a distilled model: the mean of its heads). */
  logits: Float32Array;
  /** A distilled model's heads (DeiT): the class head and the distillation head, each [batch, numClasses]. */
  heads?: { head: Float32Array; head_dist: Float32Array };
}

export interface Classifier {
  /** The architecture (image size, channels, distilled, num_classes). */
  readonly cfg: VitConfig;
  readonly numClasses: number;
  /**
   * Eval-mode logits of the first `batch` images of `images` [>= batch, H, W, C] (channels last,
   * normalized, as the loader makes them). `images` is read before the promise settles, not after.
   */
  predictLogits(images: Float32Array, batch: number): Promise<Logits>;
  dispose(): Promise<void>;
}

/**
 * A classifier on the chosen engine from a loaded model. It takes ownership of `model`: onnxruntime
 * copies the weights into its session and frees the tfjs model at once; tfjs keeps it until dispose.
 */
export async function createClassifier(choice: EngineChoice, model: VisionTransformer): Promise<Classifier> {
  return choice.engine === "onnxruntime" ? onnxruntimeClassifier(choice, model) : tfjsClassifier(model);
}
