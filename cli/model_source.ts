/**
 * The options `vit eval`, `vit predict` and `vit attention` share to name a model: a run, a
 * checkpoint, or a plain timm / Hugging Face weights file with --model or --config (and --labels).
 */
import type { Command } from "commander";
import type { BackendName, DeviceName } from "../src/config/schema.js";
import type { InferenceClassifier, InferenceModel, ModelSourceOptions } from "../src/weights/model_source.js";
import { backendOption, deviceOption, startEngine, threadsOption } from "./options.js";

export interface ModelSourceFlags extends ModelSourceOptions {
  model?: string;
  backend?: BackendName;
  threads?: number;
  device?: DeviceName;
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
    .addOption(threadsOption("one per core"))
    .addOption(deviceOption());
}

/** For `vit attention`, which reads attention maps out of the tfjs model: tfjs (auto unless --backend), then the model. */
export async function loadModelFromFlags(flags: ModelSourceFlags, tfjsOnly: string): Promise<InferenceModel> {
  const { loadInferenceModel, resolveWeightsFile } = await import("../src/weights/model_source.js");
  resolveWeightsFile(flags); // usage errors before the engine spends time starting
  await startEngine(flags.backend ?? "auto", { threads: flags.threads, tfjsOnly });
  return loadInferenceModel({ ...flags, preset: flags.model });
}

/** For eval and predict: the engine (auto unless --backend), then the model as a Classifier on it. */
export async function loadClassifierFromFlags(flags: ModelSourceFlags): Promise<InferenceClassifier> {
  const { loadClassifier, resolveWeightsFile } = await import("../src/weights/model_source.js");
  resolveWeightsFile(flags);
  const engine = await startEngine(flags.backend ?? "auto", { threads: flags.threads, device: flags.device });
  return loadClassifier({ ...flags, preset: flags.model }, engine);
}
