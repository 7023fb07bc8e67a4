/**
 * The options `vit eval`, `vit predict` and `vit attention` share to name a model: a run, a
 * checkpoint, or a plain timm / Hugging Face weights file with --model or --config (and --labels).
 */
import type { Command } from "commander";
import type { BackendName } from "../src/config/schema.js";
import type { BackendChoice } from "../src/engines/tfjs/select.js";
import type { InferenceModel, ModelSourceOptions } from "../src/weights/model_source.js";
import { backendOption, startBackend, threadsOption } from "./options.js";

export interface ModelSourceFlags extends ModelSourceOptions {
  model?: string;
  backend?: BackendName;
  threads?: number;
}

export function addModelSourceOptions(cmd: Command): Command {
  return cmd
    .option("--run <dir>", "a run folder: its best checkpoint, else its last")
    .option(
      "--checkpoint <file>",
      "a .safetensors checkpoint (or plain timm weights with --model / --config)",
    )
    .option("--ema", "with --run: the run's EMA weights")
    .option("--model <preset>", "for plain timm / Hugging Face weights: the preset they were trained as")
    .option("--config <file>", "for plain timm / Hugging Face weights: a config file describing the model")
    .option("--labels <file>", "class names, one per line (for plain weights, or to rename classes)")
    .addOption(backendOption())
    .addOption(threadsOption("one per core"));
}

/** Starts the backend (auto unless --backend), then loads the model the flags name. */
export async function loadModelFromFlags(
  flags: ModelSourceFlags,
): Promise<InferenceModel & { backend: BackendChoice }> {
  const { loadInferenceModel, resolveWeightsFile } = await import("../src/weights/model_source.js");
  resolveWeightsFile(flags); // usage errors before the backend spends time starting
  const backend = await startBackend(flags.backend ?? "auto", flags.threads);
  return { ...loadInferenceModel({ ...flags, preset: flags.model }), backend };
}
