/**
 * One evaluation pass: the model in eval mode over a loader's batches, folded into metric
 * tallies. A distilled model is scored three ways (DeiT): its class head, its distillation head
 * and their mean, which is what the model predicts.
 */
import type { DataLoader } from "../data/loader.js";
import type { Classifier } from "../engines/classifier.js";
import { addBatch, emptyTally, type Summary, summarize } from "../metrics/classification.js";
import type { HeadSummaries } from "./report.js";

export interface EvalPass {
  /** The model's prediction (a distilled model: the mean of its heads). */
  summary: Summary;
  heads?: HeadSummaries;
  badImages: number;
}

export async function evaluate(
  classifier: Classifier,
  loader: DataLoader,
  opts: { onBatch?: (imagesDone: number) => void } = {},
): Promise<EvalPass> {
  const k = classifier.numClasses;
  const { distilled } = classifier.cfg;
  const mean = emptyTally(k);
  const head = emptyTally(k);
  const dist = emptyTally(k);
  const run = loader.epoch(0);
  let done = 0;
  for await (const batch of run) {
    const out = await classifier.predictLogits(batch.images, batch.size);
    addBatch(mean, out.logits, batch.labels);
    if (distilled) {
      // A Classifier gives a distilled model's heads with every batch.
      addBatch(head, out.heads!.head, batch.labels);
      addBatch(dist, out.heads!.head_dist, batch.labels);
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
