/**
 * `vit attention IMAGE --run DIR [--out attn.png]`: the image as the model sees it, attention
 * rollout over all blocks (Abnar & Zuidema 2020: heads fused by their mean, residual identity)
 * and the last block's class-token attention per head, as heatmaps in one PNG.
 */
import * as path from "node:path";
import type { Command } from "commander";
import { addModelSourceOptions, loadModelFromFlags, type ModelSourceFlags } from "../model_source.js";

interface AttentionFlags extends ModelSourceFlags {
  out: string;
}

export function register(program: Command): void {
  addModelSourceOptions(
    program
      .command("attention")
      .description("draw attention rollout and per-head class-token attention over an image")
      .argument("<image>", "an image file"),
  )
    .option("--out <file>", "the PNG to write", "attn.png")
    .action(async (image: string, flags: AttentionFlags) => {
      const [{ explainImage, figureOf }, { writeAttentionPng }] = await Promise.all([
        import("../../src/attention/explain.js"),
        import("../../src/attention/figure.js"),
      ]);
      const im = await loadModelFromFlags(
        flags,
        "vit attention reads the attention maps out of the tfjs model: give --backend auto, tensorflow, wasm or cpu",
      );
      try {
        const e = await explainImage(im.model, im.config, image, im.classes);
        const p = e.prediction;
        const arch =
          im.config.model.preset ?? `${im.config.model.depth} blocks x ${im.config.model.num_heads} heads`;
        await writeAttentionPng(
          flags.out,
          figureOf(
            e,
            `${path.basename(image)}: ${p.label} ${(p.prob * 100).toFixed(1)}%`,
            `${im.weightsFile} (${arch})`,
          ),
        );
        process.stdout.write(`${flags.out}\n`);
      } finally {
        im.model.dispose();
      }
    });
}
