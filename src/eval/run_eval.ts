/**
 * What `vit eval` does once the model is loaded: picks the data (`--data`, or the run's own val
 * split), runs one evaluation pass, draws confusion.png, and returns the result the report prints.
 * Progress and notes go to `log` (stderr in the CLI); the result is for stdout.
 */
import * as path from "node:path";
import { DataLoader } from "../data/loader.js";
import { UsageError } from "../errors.js";
import type { InferenceClassifier } from "../weights/model_source.js";
import { writeConfusionPng } from "./confusion_plot.js";
import { openEvalData, runValidationData } from "./data.js";
import { evaluate } from "./evaluate.js";
import type { EvalResult } from "./report.js";

export interface EvalOptions {
  /** An ImageFolder or CSV manifest; default: the run's val split. */
  data?: string;
  /** Default: the run's train.batch_size. */
  batchSize?: number;
  /** Where to draw the confusion matrix; default: confusion.png beside the weights' run. */
  confusion?: string;
  /** Recorded in the result: the weights are the run's EMA. */
  ema: boolean;
  /** One line or a progress fragment at a time, for stderr. */
  log: (text: string) => void;
  /** Whether `log` may take "\r" progress updates (a TTY). */
  showProgress: boolean;
}

export async function runEval(im: InferenceClassifier, opts: EvalOptions): Promise<EvalResult> {
  const { config, classes } = im;
  if (!classes) {
    throw new UsageError(`${im.weightsFile} has no class names: give --labels FILE (one name per line)`);
  }
  const { dataset, missing } = opts.data
    ? openEvalData(opts.data, classes)
    : await runValidationData(config, classes);
  if (missing.length > 0) {
    opts.log(`note: ${opts.data} has no images of ${missing.length} classes: ${missing.join(", ")}\n`);
  }
  const loader = new DataLoader(dataset, {
    train: false,
    batchSize: opts.batchSize ?? config.train.batch_size,
    data: config.data,
    imgSize: config.model.img_size,
    inChans: config.model.in_chans,
    seed: config.train.seed,
    dropLast: false,
  });
  const total = dataset.samples.length;
  opts.log(`evaluating ${im.weightsFile} on ${total} images of ${dataset.source}\n`);
  let pass: Awaited<ReturnType<typeof evaluate>>;
  try {
    pass = await evaluate(im.classifier, loader, {
      onBatch: (done) => opts.showProgress && opts.log(`\r${done}/${total} images`),
    });
  } finally {
    await loader.close();
  }
  if (opts.showProgress) opts.log("\n");
  if (pass.badImages > 0) opts.log(`skipped ${pass.badImages} unreadable images\n`);

  const png = opts.confusion ?? path.join(im.runDir ?? path.dirname(im.weightsFile), "confusion.png");
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  await writeConfusionPng(png, classes, pass.summary.confusion, {
    title: `${path.basename(im.runDir ?? im.weightsFile)}: top-1 ${pct(pass.summary.top1)} on ${pass.summary.images} images`,
  });
  return {
    classes,
    summary: pass.summary,
    heads: pass.heads,
    source: { checkpoint: im.weightsFile, data: dataset.source, ema: opts.ema, confusion_png: png },
  };
}
