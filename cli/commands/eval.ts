/**
 * `vit eval --run DIR | --checkpoint F [--data DIR|CSV] [--ema] [--batch-size N] [--json]`: top-1,
 * top-5, loss, per-class precision/recall/F1, the confusion matrix (text up to 20 classes, and
 * confusion.png), the most confused pairs; a distilled model's heads separately. `--json` prints
 * the DESIGN.md shape on stdout; the human report goes to stdout without it, progress to stderr.
 */
import * as path from "node:path";
import type { Command } from "commander";
import { UsageError } from "../../src/errors.js";
import { addModelSourceOptions, loadClassifierFromFlags, type ModelSourceFlags } from "../model_source.js";
import { positiveInt } from "../options.js";

interface EvalFlags extends ModelSourceFlags {
  data?: string;
  batchSize?: number;
  json?: boolean;
  confusion?: string;
}

export function register(program: Command): void {
  addModelSourceOptions(
    program
      .command("eval")
      .description("evaluate a model: accuracy, loss, per-class metrics, confusion matrix"),
  )
    .option(
      "--data <dir|csv>",
      "an ImageFolder or CSV manifest with the model's class names (default: the run's val split)",
    )
    .option("--batch-size <n>", "images per forward pass (default: the run's train.batch_size)", positiveInt)
    .option("--json", "print the metrics as JSON on stdout")
    .option(
      "--confusion <file>",
      "where to draw the confusion matrix (default: confusion.png in the run folder)",
    )
    .action(async (flags: EvalFlags) => {
      if (!flags.data && (flags.model || flags.config)) {
        throw new UsageError(
          "plain weights come without a run to take validation data from: give --data DIR|CSV",
        );
      }
      const [
        { DataLoader },
        { openEvalData, runValidationData },
        { evaluate },
        report,
        { writeConfusionPng },
      ] = await Promise.all([
        import("../../src/data/loader.js"),
        import("../../src/eval/data.js"),
        import("../../src/eval/evaluate.js"),
        import("../../src/eval/report.js"),
        import("../../src/eval/confusion_plot.js"),
      ]);
      const im = await loadClassifierFromFlags(flags);
      try {
        const { config, classes } = im;
        if (!classes) {
          throw new UsageError(
            `${im.weightsFile} has no class names: give --labels FILE (one name per line)`,
          );
        }
        const { dataset, missing } = flags.data
          ? openEvalData(flags.data, classes)
          : await runValidationData(config, classes);
        if (missing.length > 0) {
          process.stderr.write(
            `note: ${flags.data} has no images of ${missing.length} classes: ${missing.join(", ")}\n`,
          );
        }
        const loader = new DataLoader(dataset, {
          train: false,
          batchSize: flags.batchSize ?? config.train.batch_size,
          data: config.data,
          imgSize: config.model.img_size,
          inChans: config.model.in_chans,
          seed: config.train.seed,
          dropLast: false,
        });
        const total = dataset.samples.length;
        process.stderr.write(`evaluating ${im.weightsFile} on ${total} images of ${dataset.source}\n`);
        const tty = process.stderr.isTTY;
        let pass: Awaited<ReturnType<typeof evaluate>>;
        try {
          pass = await evaluate(im.classifier, loader, {
            onBatch: (done) => tty && process.stderr.write(`\r${done}/${total} images`),
          });
        } finally {
          await loader.close();
        }
        if (tty) process.stderr.write("\n");
        if (pass.badImages > 0) process.stderr.write(`skipped ${pass.badImages} unreadable images\n`);

        const png = flags.confusion ?? path.join(im.runDir ?? path.dirname(im.weightsFile), "confusion.png");
        const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
        await writeConfusionPng(png, classes, pass.summary.confusion, {
          title: `${path.basename(im.runDir ?? im.weightsFile)}: top-1 ${pct(pass.summary.top1)} on ${pass.summary.images} images`,
        });
        const result = {
          classes,
          summary: pass.summary,
          heads: pass.heads,
          source: {
            checkpoint: im.weightsFile,
            data: dataset.source,
            ema: flags.ema === true,
            confusion_png: png,
          },
        };
        // One line of JSON: a 100-class confusion matrix would be 10,000 lines pretty-printed.
        process.stdout.write(
          flags.json ? `${JSON.stringify(report.evalJson(result))}\n` : report.formatEvalText(result),
        );
      } finally {
        await im.classifier.dispose();
      }
    });
}
