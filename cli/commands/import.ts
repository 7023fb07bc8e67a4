/**
 * `vit import FILE --out OUT.safetensors`: timm / Hugging Face safetensors or a Google ViT .npz
 * to a checkpoint of this framework (config and class names in its metadata), so
 * `vit eval|predict --checkpoint OUT` and `model.pretrained: OUT` work. The model is described by
 * --model or --config, else by the file itself (shapes, a config.json beside it, the preset with
 * the same architecture). --img-size resamples pos_embed; --num-classes re-initializes the head.
 */
import type { Command } from "commander";
import type { ImportOptions } from "../../src/weights/import.js";
import { positiveInt } from "../options.js";

export function register(program: Command): void {
  program
    .command("import")
    .description("convert timm / Hugging Face / Google .npz ViT weights into a checkpoint")
    .argument("<file>", "a .safetensors (timm or Hugging Face names) or Google ViT .npz file")
    .requiredOption("--out <file>", "the checkpoint to write (.safetensors)")
    .option("--model <preset>", "the preset the weights belong to (default: told by the file)")
    .option("--config <file>", "a config file describing the model (default: told by the file)")
    .option(
      "--num-classes <k>",
      "classes of the new model: another count re-initializes the head",
      positiveInt,
    )
    .option("--img-size <px>", "input size of the new model: pos_embed is resampled", positiveInt)
    .option("--labels <file>", "class names, one per line (default: the file's config, else 0..K-1)")
    .option("--allow-partial", "load what fits; missing and unexpected keys become a warning")
    .action(async (file: string, flags: ImportOptions) => {
      const { importWeights } = await import("../../src/weights/import.js");
      process.stderr.write(`${importWeights(file, flags).summary}\n`);
      process.stdout.write(`${flags.out}\n`);
    });
}
