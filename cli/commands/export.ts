/**
 * `vit export --run DIR | --checkpoint F --format onnx|timm --out PATH`: a checkpoint as a timm
 * state dict + config.json (weights only, no optimizer state) or as an ONNX graph; prints the
 * files written.
 */
import type { Command } from "commander";
import { Option } from "commander";
import type { ExportFormat } from "../../src/weights/export.js";

interface ExportFlags {
  run?: string;
  checkpoint?: string;
  ema?: boolean;
  format: ExportFormat;
  out: string;
}

export function register(program: Command): void {
  program
    .command("export")
    .description("write a checkpoint as timm weights + config.json, or as an ONNX model")
    .option("--run <dir>", "a run folder: its best checkpoint, else its last")
    .option("--checkpoint <file>", "a checkpoint file (.safetensors with config and classes in its metadata)")
    .option("--ema", "with --run: the run's EMA weights")
    .addOption(
      new Option("--format <format>", "output format").choices(["onnx", "timm"]).makeOptionMandatory(),
    )
    .requiredOption(
      "--out <path>",
      "onnx: the .onnx file; timm: x.safetensors (+ x.json), or a folder (model.safetensors + config.json)",
    )
    .action(async (flags: ExportFlags) => {
      const [{ exportCheckpoint, readCheckpoint }, { resolveWeightsFile }] = await Promise.all([
        import("../../src/weights/export.js"),
        import("../../src/weights/model_source.js"),
      ]);
      const ckpt = readCheckpoint(resolveWeightsFile(flags).file);
      if (flags.format === "timm" && ckpt.model.cfg.representation_size !== null) {
        process.stderr.write(
          "warning: representation_size (pre_logits.fc) exists only in timm < 0.6; newer timm cannot build this model\n",
        );
      }
      for (const file of exportCheckpoint(ckpt, flags.format, flags.out)) process.stdout.write(`${file}\n`);
    });
}
