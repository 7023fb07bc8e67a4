/**
 * `vit predict` without the printing: files in, one result per file out, in input order, as
 * soon as its batch is done. Images are decoded by the data loader's workers with the model's
 * eval transform; a file that cannot be read or decoded becomes a result with an `error`, and
 * the rest of its batch still gets answers.
 */
import type { Config } from "../config/index.js";
import { DataLoader } from "../data/loader.js";
import type { Classifier } from "../engines/classifier.js";
import { type PredictResult, topPredictions } from "./format.js";

export interface PredictOptions {
  topk: number;
  batchSize: number;
  /** Class names; without them predictions are labelled by index. */
  classes: readonly string[] | null;
}

const SKIPPED = "skipping bad image ";

export async function* predictFiles(
  classifier: Classifier,
  config: Config,
  files: readonly string[],
  opts: PredictOptions,
): AsyncGenerator<PredictResult> {
  if (files.length === 0) return;
  const { img_size: s, in_chans: c } = classifier.cfg;
  // The loader reports each bad file once, as "skipping bad image <file>: <reason>".
  const reasons = new Map<string, string>();
  const loader = new DataLoader(
    { source: "inputs", classes: opts.classes ?? [], samples: files.map((path) => ({ path, label: 0 })) },
    {
      train: false,
      batchSize: opts.batchSize,
      data: { ...config.data, on_bad_image: "skip", cache: false },
      imgSize: s,
      inChans: c,
      seed: 0,
      dropLast: false,
      onWarning: (message) => {
        if (!message.startsWith(SKIPPED)) return;
        const rest = message.slice(SKIPPED.length);
        const file = files.find((f) => rest.startsWith(`${f}: `));
        if (file) reasons.set(file, rest);
      },
    },
  );
  try {
    for await (const batch of loader.epoch(0)) {
      const values = (await classifier.predictLogits(batch.images, batch.size)).logits;
      const k = classifier.numClasses;
      const row = new Map(Array.from(batch.indices, (index, i) => [index, i]));
      // Eval batches cover consecutive files; a file missing from the batch was a bad image.
      const first = batch.step * opts.batchSize;
      for (let index = first; index < Math.min(files.length, first + opts.batchSize); index++) {
        const image = files[index];
        const i = row.get(index);
        yield i === undefined
          ? { image, predictions: [], error: reasons.get(image) ?? `${image}: could not be read` }
          : {
              image,
              predictions: topPredictions(
                values.subarray(i * k, (i + 1) * k),
                opts.topk,
                opts.classes ?? undefined,
              ),
            };
      }
    }
  } finally {
    await loader.close();
  }
}
