/**
 * `vit export`: a checkpoint of this framework to the formats other tools load.
 *
 * - timm: the weights alone (a plain timm state dict, in timm's key order) and, beside them, a
 *   config in the layout of timm's Hugging Face hub `config.json` (`architecture`, `num_classes`,
 *   `model_args`, `pretrained_cfg`, `label_names`), so `timm.create_model(architecture,
 *   num_classes=..., **model_args)` rebuilds the model the weights load into.
 * - onnx: the eval-mode graph (src/engines/onnxruntime/inference.ts), with the classes and config as metadata.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { resolveConfig } from "../config/index.js";
import type { Config } from "../config/schema.js";
import { exportOnnx } from "../engines/onnxruntime/inference.js";
import { writeFileAtomic } from "../io/atomic.js";
import { readSafetensors, writeSafetensors } from "../io/safetensors.js";
import { checkTimmStateDict } from "../model/timm_spec.js";
import { VisionTransformer } from "../model/vision_transformer.js";
import type { TensorData } from "../tensor.js";
import { readCheckpointMetadata } from "./checkpoint.js";

export type ExportFormat = "onnx" | "timm";

export interface Checkpoint {
  file: string;
  weights: Map<string, TensorData>;
  config: Config;
  classes: string[];
  /** The architecture, declared (not allocated): its config, parameter names and shapes. */
  model: VisionTransformer;
}

/** A checkpoint with the config and class names its `__metadata__` carries. */
export function readCheckpoint(file: string): Checkpoint {
  const { tensors, metadata } = readSafetensors(file);
  const { config: raw, classes } = readCheckpointMetadata(file, metadata);
  const config = resolveConfig(raw, { source: file });
  const model = new VisionTransformer({
    ...config.model,
    num_classes: config.model.num_classes ?? classes.length,
  });
  checkTimmStateDict(tensors, model, file);
  return { file, weights: tensors, config, classes, model };
}

/** Writes `ckpt` as `format` to `out`; returns the files written. */
export function exportCheckpoint(ckpt: Checkpoint, format: ExportFormat, out: string): string[] {
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  if (format === "onnx") {
    const metadata = { classes: JSON.stringify(ckpt.classes), config: JSON.stringify(ckpt.config) };
    writeFileAtomic(out, exportOnnx(ckpt.weights, ckpt.model.cfg, { metadata, source: ckpt.file }));
    return [out];
  }
  const { weightsFile, configFile } = timmPaths(out);
  const keys = ckpt.model.paramShapes().keys();
  const weights = new Map([...keys].map((k) => [k, ckpt.weights.get(k)!]));
  writeSafetensors(weightsFile, weights, { format: "pt" });
  writeFileAtomic(configFile, `${JSON.stringify(timmHubConfig(ckpt), null, 2)}\n`);
  return [weightsFile, configFile];
}

/**
 * `x.safetensors` -> x.safetensors + x.json; anything else is a folder in the Hugging Face hub
 * layout (model.safetensors + config.json) that newer timm also opens as `local-dir:<folder>`.
 */
function timmPaths(out: string): { weightsFile: string; configFile: string } {
  if (out.endsWith(".safetensors")) {
    return { weightsFile: out, configFile: `${out.slice(0, -".safetensors".length)}.json` };
  }
  fs.mkdirSync(out, { recursive: true });
  return { weightsFile: path.join(out, "model.safetensors"), configFile: path.join(out, "config.json") };
}

/** timm's hub config.json for the checkpoint: everything `timm.create_model` needs besides the weights. */
function timmHubConfig(ckpt: Checkpoint): Record<string, unknown> {
  const m = ckpt.model.cfg;
  const { mean, std, crop_pct, interpolation } = ckpt.config.data;
  return {
    architecture: timmArchitecture(ckpt.config),
    num_classes: m.num_classes,
    num_features: ckpt.model.numFeatures,
    global_pool: m.global_pool,
    // kwargs of timm's VisionTransformer; they override every size the architecture's entry point sets
    model_args: {
      img_size: m.img_size,
      patch_size: m.patch_size,
      in_chans: m.in_chans,
      embed_dim: m.embed_dim,
      depth: m.depth,
      num_heads: m.num_heads,
      mlp_ratio: m.mlp_ratio,
      qkv_bias: m.qkv_bias,
      class_token: m.class_token,
      global_pool: m.global_pool,
      ...(m.representation_size !== null && { representation_size: m.representation_size }),
    },
    pretrained_cfg: {
      input_size: [m.in_chans, m.img_size, m.img_size],
      fixed_input_size: true,
      mean,
      std,
      crop_pct,
      interpolation,
      num_classes: m.num_classes,
    },
    label_names: ckpt.classes,
  };
}

/** Presets that are also timm's registered model names. */
const TIMM_NAMES = /^(vit_(tiny|small|base|large)|deit_(tiny|small|base)(_distilled)?)_patch16_224$/;

/**
 * A model name timm has registered: the preset when it is one of timm's (and agrees on the
 * distillation token), else the smallest of the family; `model_args` sets the sizes either way.
 */
export function timmArchitecture(config: Config): string {
  const { preset, distilled } = config.model;
  if (preset && TIMM_NAMES.test(preset) && preset.includes("_distilled") === distilled) return preset;
  return distilled ? "deit_tiny_distilled_patch16_224" : "vit_tiny_patch16_224";
}
