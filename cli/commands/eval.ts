/**
 * `vit eval --run DIR | --checkpoint F [--data DIR|CSV] [--ema] [--batch-size N] [--json]`: top-1,
 * top-5, loss, per-class precision/recall/F1, the confusion matrix (text up to 20 classes, and
 * confusion.png), the most confused pairs; a distilled model's heads separately. `--json` prints
 * the JSON shape of docs/design.md ("CLI contract") on stdout; the human report goes to stdout without it, progress to stderr.
 */
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
      const [{ runEval }, { evalJson, formatEvalText }] = await Promise.all([
        import("../../src/eval/run_eval.js"),
        import("../../src/eval/report.js"),
      ]);
      const im = await loadClassifierFromFlags(flags);
      try {
        const result = await runEval(im, {
          data: flags.data,
          batchSize: flags.batchSize,
          confusion: flags.confusion,
          ema: flags.ema === true,
          log: (text) => process.stderr.write(text),
          showProgress: process.stderr.isTTY,
        });
        // One line of JSON: a 100-class confusion matrix would be 10,000 lines pretty-printed.
        process.stdout.write(flags.json ? `${JSON.stringify(evalJson(result))}\n` : formatEvalText(result));
      } finally {
        await im.classifier.dispose();
      }
    });
}
