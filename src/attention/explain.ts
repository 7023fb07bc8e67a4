/**
 * One image through the model with its attention read out: the eval transform (what the model
 * sees), the prediction, the rollout over all blocks and the last block's per-head maps, ready
 * for the figure.
 */
import * as tf from "@tensorflow/tfjs";
import type { Config } from "../config/index.js";
import { BadImageError, type ImageInput, openImage } from "../data/decode.js";
import { DataError } from "../errors.js";
import type { VisionTransformer } from "../model/vision_transformer.js";
import { type Prediction, topPredictions } from "../predict/format.js";
import { EvalTransform } from "../predict/pixels.js";
import { forwardWithAttention } from "./capture.js";
import type { AttentionFigure, RgbImage } from "./figure.js";
import { attentionRollout, headRelevance, patchRelevance } from "./rollout.js";

export interface Explanation {
  image: RgbImage;
  prediction: Prediction;
  grid: [number, number];
  rollout: Float64Array;
  heads: Float64Array[];
  depth: number;
}

/** `explainImage` of a file; an unreadable or corrupt one is a DataError naming it. */
export async function explainFile(
  model: VisionTransformer,
  config: Config,
  file: string,
  classes: readonly string[] | null,
): Promise<Explanation> {
  try {
    return await explainImage(model, config, await openImage(file), classes);
  } catch (err) {
    if (err instanceof BadImageError) throw new DataError(err.message);
    throw err;
  }
}

/** One opened image explained; a corrupt one throws BadImageError. */
export async function explainImage(
  model: VisionTransformer,
  config: Config,
  img: ImageInput,
  classes: readonly string[] | null,
): Promise<Explanation> {
  const { img_size: s, in_chans: c, global_pool } = model.cfg;
  const { rgb: px, input } = await new EvalTransform(config.data, s, c).apply(img);
  const x = tf.tensor4d(input, [1, s, s, c]);
  const pass = forwardWithAttention(model, x);
  x.dispose();
  const layers = pass.attention[0];
  const n = model.numPrefixTokens;
  // What the head reads: the class token's row, or the mean of the patch rows when pooling by average.
  const row = global_pool === "token" ? 0 : "mean";
  const rollout = attentionRollout(layers);
  return {
    image: { width: s, height: s, data: px },
    prediction: topPredictions(pass.logits, 1, classes ?? undefined)[0],
    grid: model.gridSize,
    rollout: patchRelevance(rollout, layers[0].tokens, n, row),
    heads: headRelevance(layers[layers.length - 1], n, row),
    depth: layers.length,
  };
}

export function figureOf(e: Explanation, title: string, subtitle?: string): AttentionFigure {
  return {
    image: e.image,
    grid: e.grid,
    rollout: e.rollout,
    heads: e.heads,
    depth: e.depth,
    title,
    subtitle,
  };
}
