/**
 * `vit predict IMAGE|DIR|GLOB ... --run DIR | --checkpoint F [--topk K] [--json|--csv]`: top-k
 * classes per image, streamed as batches finish. A file that cannot be read gets an error line
 * on stderr (and an `error` field in --json / --csv) while the others still get answers; the exit
 * code is then 1.
 */
import type { Command } from "commander";
import { UsageError } from "../../src/errors.js";
import { addModelSourceOptions, loadClassifierFromFlags, type ModelSourceFlags } from "../model_source.js";
import { positiveInt } from "../options.js";

interface PredictFlags extends ModelSourceFlags {
  topk: number;
  batchSize: number;
  json?: boolean;
  csv?: boolean;
}

export function register(program: Command): void {
  addModelSourceOptions(
    program
      .command("predict")
      .description("classify images: files, folders (recursively) or quoted glob patterns (*, ?, **)")
      .argument("<images...>", "image files, folders or glob patterns"),
  )
    .option("--topk <k>", "classes per image, most probable first", positiveInt, 5)
    .option("--batch-size <n>", "images per forward pass", positiveInt, 32)
    .option("--json", "print a JSON array: [{image, predictions: [{label, index, prob}]}]")
    .option("--csv", "print CSV, one row per image")
    .action(async (images: string[], flags: PredictFlags) => {
      if (flags.json && flags.csv) throw new UsageError("give --json or --csv, not both");
      const [{ expandInputs }, { createWriter }, { predictFiles }] = await Promise.all([
        import("../../src/predict/inputs.js"),
        import("../../src/predict/format.js"),
        import("../../src/predict/predict.js"),
      ]);
      const { files, errors } = expandInputs(images);
      for (const e of errors) process.stderr.write(`error: ${e.message}\n`);
      let failed = 0;
      if (files.length > 0) {
        const im = await loadClassifierFromFlags(flags);
        try {
          const topk = Math.min(flags.topk, im.numClasses);
          const labels = im.classes ?? Array.from({ length: im.numClasses }, (_, i) => String(i));
          const writer = createWriter(flags.json ? "json" : flags.csv ? "csv" : "table", {
            topk,
            images: files,
            labels,
          });
          process.stdout.write(writer.begin());
          for await (const r of predictFiles(im.classifier, im.config, files, {
            topk,
            batchSize: flags.batchSize,
            classes: im.classes,
          })) {
            if (r.error) {
              failed++;
              process.stderr.write(`error: ${r.error}\n`);
            }
            process.stdout.write(writer.write(r));
          }
          process.stdout.write(writer.end());
        } finally {
          await im.classifier.dispose();
        }
      }
      if (failed > 0) process.stderr.write(`${failed} of ${files.length} images could not be read\n`);
      if (failed > 0 || errors.length > 0) process.exitCode = 1;
    });
}
