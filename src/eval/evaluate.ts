/**
 * One evaluation pass: the model in eval mode over a loader's batches, folded into metric
 * tallies. A distilled model is scored three ways (DeiT): its class head, its distillation head
 * (both read through the capture hook) and their mean, which is what the model predicts.
 */
import * as tf from "@tensorflow/tfjs";
import type { DataLoader } from "../data/loader.js";
import { addBatch, emptyTally, type Summary, summarize } from "../metrics/classification.js";
import type { VisionTransformer } from "../model/vision_transformer.js";
import type { HeadSummaries } from "./report.js";

export interface EvalPass {
  /** The model's prediction (a distilled model: the mean of its heads). */
  summary: Summary;
  heads?: HeadSummaries;
  badImages: number;
}

export async function evaluate(
  model: VisionTransformer,
  loader: DataLoader,
  opts: { onBatch?: (imagesDone: number) => void } = {},
): Promise<EvalPass> {
  const k = model.numClasses;
  const { img_size: s, in_chans: c, distilled } = model.cfg;
  const mean = emptyTally(k);
  const head = emptyTally(k);
  const dist = emptyTally(k);
  const run = loader.epoch(0);
  let done = 0;
  for await (const batch of run) {
    const captured = new Map<string, Float32Array>();
    const x = tf.tensor4d(batch.images, [batch.size, s, s, c]);
    const logits = model.forward(x, {
      training: false,
      capture: distilled
        ? (name, out) => {
            // Read inside the forward pass: the tensors are freed when it returns.
            if (name === "head" || name === "head_dist")
              captured.set(name, (out.dataSync() as Float32Array).slice());
          }
        : undefined,
    }) as tf.Tensor2D;
    x.dispose();
    addBatch(mean, logits.dataSync(), batch.labels);
    logits.dispose();
    if (distilled) {
      addBatch(head, captured.get("head")!, batch.labels);
      addBatch(dist, captured.get("head_dist")!, batch.labels);
    }
    done += batch.size;
    opts.onBatch?.(done);
  }
  const summary = summarize(mean);
  return {
    summary,
    heads: distilled ? { head: summarize(head), head_dist: summarize(dist), mean: summary } : undefined,
    badImages: run.badImages,
  };
}
