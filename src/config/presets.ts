/**
 * The model registry: every variant by its timm name, with the preprocessing it was trained
 * with (timm's pretrained_cfg). `model.preset` in a config starts from one of these.
 */
import type { DataConfig, ModelConfig } from "./schema.js";

export type PresetArch = Partial<
  Pick<
    ModelConfig,
    | "img_size"
    | "patch_size"
    | "in_chans"
    | "embed_dim"
    | "depth"
    | "num_heads"
    | "mlp_ratio"
    | "qkv_bias"
    | "class_token"
    | "global_pool"
    | "distilled"
  >
>;

export type PresetPreprocessing = Pick<DataConfig, "mean" | "std" | "crop_pct" | "interpolation">;

export interface Preset {
  name: string;
  description: string;
  model: PresetArch;
  data: PresetPreprocessing;
  /** Classes of the dataset the preset is known for; used for parameter counts. */
  num_classes: number;
}

const IMAGENET: PresetPreprocessing = {
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  crop_pct: 0.875,
  interpolation: "bicubic",
};
/** timm's augreg ViT weights were trained with inception-style normalisation. */
const INCEPTION: PresetPreprocessing = {
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
  crop_pct: 0.9,
  interpolation: "bicubic",
};
const GREY: PresetPreprocessing = { mean: [0.5], std: [0.5], crop_pct: 1, interpolation: "bilinear" };
const SMALL_RGB: PresetPreprocessing = { ...IMAGENET, crop_pct: 1 };

const WIDTHS = {
  tiny: { embed_dim: 192, num_heads: 3 },
  small: { embed_dim: 384, num_heads: 6 },
  base: { embed_dim: 768, num_heads: 12 },
  large: { embed_dim: 1024, num_heads: 16 },
} as const;

function imagenetPreset(family: "vit" | "deit", size: keyof typeof WIDTHS, distilled: boolean): Preset {
  const depth = size === "large" ? 24 : 12;
  const name = `${family}_${size}${distilled ? "_distilled" : ""}_patch16_224`;
  return {
    name,
    description: `${family === "vit" ? "ViT" : "DeiT"}-${size[0].toUpperCase()}/16 at 224 px${distilled ? ", distillation token" : ""}`,
    model: { img_size: 224, patch_size: 16, in_chans: 3, depth, mlp_ratio: 4, ...WIDTHS[size], distilled },
    data: family === "vit" ? INCEPTION : IMAGENET,
    num_classes: 1000,
  };
}

export const PRESETS: readonly Preset[] = [
  imagenetPreset("vit", "tiny", false),
  imagenetPreset("vit", "small", false),
  imagenetPreset("vit", "base", false),
  imagenetPreset("vit", "large", false),
  imagenetPreset("deit", "tiny", false),
  imagenetPreset("deit", "small", false),
  imagenetPreset("deit", "base", false),
  imagenetPreset("deit", "tiny", true),
  imagenetPreset("deit", "small", true),
  imagenetPreset("deit", "base", true),
  {
    name: "vit_tiny_patch4_32",
    description: "CPU-sized ViT for 32 px RGB images (CIFAR-like)",
    model: { img_size: 32, patch_size: 4, in_chans: 3, embed_dim: 192, depth: 6, num_heads: 3, mlp_ratio: 4 },
    data: SMALL_RGB,
    num_classes: 10,
  },
  {
    name: "vit_micro_patch4_32",
    description: "Micro ViT for 32 px RGB in 4 px patches (64 tokens), trains in minutes on a CPU",
    model: { img_size: 32, patch_size: 4, in_chans: 3, embed_dim: 96, depth: 4, num_heads: 3, mlp_ratio: 2 },
    data: SMALL_RGB,
    num_classes: 10,
  },
  {
    name: "vit_micro_patch8_32",
    description:
      "The quickstart's ViT: 32 px RGB in 8 px patches (16 tokens), about 4x the images/s of patch 4",
    model: { img_size: 32, patch_size: 8, in_chans: 3, embed_dim: 96, depth: 4, num_heads: 3, mlp_ratio: 2 },
    data: SMALL_RGB,
    num_classes: 10,
  },
  {
    name: "vit_micro_patch4_28_gray",
    description: "CPU-sized ViT for 28 px greyscale images (MNIST-like)",
    model: { img_size: 28, patch_size: 4, in_chans: 1, embed_dim: 64, depth: 4, num_heads: 4, mlp_ratio: 2 },
    data: GREY,
    num_classes: 10,
  },
];

export function findPreset(name: string): Preset | undefined {
  return PRESETS.find((p) => p.name === name);
}
