/**
 * The config that may sit beside pretrained weights: Hugging Face's `config.json` (read by
 * keymaps.ts), or timm's hub `config.json` / the `<name>.json` that `vit export --format timm`
 * writes (`architecture`, `num_classes`, `label_names`, `model_args`, `pretrained_cfg`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { PRESETS } from "../config/presets.js";
import { type DataConfig, interpolations, type ModelConfig } from "../config/schema.js";
import { DataError } from "../errors.js";
import { parseHfConfig } from "./keymaps.js";

/** What a config file beside the weights says. */
export interface SideConfig {
  file: string;
  model: Partial<ModelConfig>;
  /** Preprocessing (timm's pretrained_cfg); empty for Hugging Face's config.json. */
  data: Partial<DataConfig>;
  classNames: string[] | null;
  /** Hugging Face's LayerNorm eps (ViTConfig's default is 1e-12); null when not given. */
  layerNormEps: number | null;
  /** timm's `architecture` when it is one of our presets. */
  preset: string | null;
}

/** `<name>.json` (vit export --format timm) or `config.json` in the weights' folder, if it is a model config. */
export function readSideConfig(file: string): SideConfig | null {
  const stem = path.join(path.dirname(file), path.basename(file, path.extname(file)));
  for (const candidate of new Set([`${stem}.json`, path.join(path.dirname(file), "config.json")])) {
    if (!fs.existsSync(candidate)) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(candidate, "utf8"));
    } catch (err) {
      throw new DataError(`${candidate}: not valid JSON: ${(err as Error).message}`);
    }
    if (typeof raw !== "object" || raw === null) continue;
    if ("model_type" in raw || "architectures" in raw) {
      const hf = parseHfConfig(raw, candidate);
      const { model, classNames, layerNormEps } = hf;
      return { file: candidate, model, data: {}, classNames, layerNormEps, preset: null };
    }
    if ("architecture" in raw) return parseTimmConfig(raw, candidate);
    // Any other JSON (e.g. unrelated metadata) is not ours to read.
  }
  return null;
}

const TimmConfigSchema = z.looseObject({
  architecture: z.string(),
  num_classes: z.number().int().nonnegative().optional(),
  label_names: z.array(z.string()).optional(),
  // z.object drops the kwargs this framework has no key for.
  model_args: z
    .object({
      img_size: z.number().int().positive().optional(),
      patch_size: z.number().int().positive().optional(),
      in_chans: z.union([z.literal(1), z.literal(3)]).optional(),
      embed_dim: z.number().int().positive().optional(),
      depth: z.number().int().positive().optional(),
      num_heads: z.number().int().positive().optional(),
      mlp_ratio: z.number().positive().optional(),
      qkv_bias: z.boolean().optional(),
      class_token: z.boolean().optional(),
      global_pool: z.enum(["token", "avg"]).optional(),
      representation_size: z.number().int().positive().nullable().optional(),
    })
    .optional(),
  pretrained_cfg: z
    .looseObject({
      input_size: z.array(z.number().int().positive()).length(3).optional(),
      mean: z.array(z.number()).optional(),
      std: z.array(z.number().positive()).optional(),
      crop_pct: z.number().positive().max(1).optional(),
      interpolation: z.enum(interpolations).optional(),
    })
    .optional(),
});

/** timm's hub config.json: architecture, num_classes, label_names, model_args, pretrained_cfg. */
function parseTimmConfig(raw: unknown, file: string): SideConfig {
  const parsed = TimmConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DataError(`${file}: ${issue.path.map(String).join(".") || "(root)"}: ${issue.message}`);
  }
  const c = parsed.data;
  const name = c.architecture.split(".")[0];
  const preset = PRESETS.find((p) => p.name === name)?.name ?? null;
  const model: Partial<ModelConfig> = { ...c.model_args };
  if (c.pretrained_cfg?.input_size && model.img_size === undefined)
    model.img_size = c.pretrained_cfg.input_size[2];
  if (c.num_classes !== undefined) model.num_classes = c.num_classes;
  if (name.includes("_distilled")) model.distilled = true;
  const { mean, std, crop_pct, interpolation } = c.pretrained_cfg ?? {};
  const data = Object.fromEntries(
    Object.entries({ mean, std, crop_pct, interpolation }).filter(([, v]) => v !== undefined),
  ) as Partial<DataConfig>;
  return { file, model, data, classNames: c.label_names ?? null, layerNormEps: null, preset };
}
