/**
 * What `vit serve` serves: the model as a Classifier on the chosen engine (what `/predict` and
 * `vit predict` run), and, for `/attention`, the tfjs model, whose attention maps are read out
 * of its forward pass. The tfjs copy is loaded on the first `/attention` request only.
 */
import type { EngineChoice } from "../engines/select.js";
import type { VisionTransformer } from "../model/vision_transformer.js";
import {
  type InferenceClassifier,
  loadClassifier,
  loadInferenceModel,
  type ModelSourceOptions,
} from "../weights/model_source.js";

export interface ServedModel extends InferenceClassifier {
  /** The tfjs model, for attention maps; loaded once, on first use. */
  attentionModel(): VisionTransformer;
  dispose(): Promise<void>;
}

export async function loadServedModel(
  source: ModelSourceOptions,
  engine: EngineChoice,
): Promise<ServedModel> {
  const loaded = await loadClassifier(source, engine);
  let tfjsModel: VisionTransformer | null = null;
  return {
    ...loaded,
    attentionModel() {
      tfjsModel ??= loadInferenceModel(source).model;
      return tfjsModel;
    },
    async dispose() {
      tfjsModel?.dispose();
      await loaded.classifier.dispose();
    },
  };
}
