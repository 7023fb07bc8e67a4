// The three models of issue 14, defined here rather than taken from the presets (the gray preset's MLP
// ratio is 2), and named as the PyTorch baseline (its --configs) names them. Drop path 0.1 and the
// default recipe (AdamW, label-smoothed cross-entropy) in training.
import { type Config, resolveConfig } from "../src/config/index.js";
import type { VitConfig } from "../src/model/vision_transformer.js";

export interface BenchConfig {
  name: string;
  batch: number;
  model: Partial<VitConfig>;
}

const ARCH = { mlp_ratio: 4, drop_path_rate: 0.1 };

export const CONFIGS: BenchConfig[] = [
  {
    // timm's vit_tiny_patch16_224
    name: "vit-ti16-224",
    batch: 32,
    model: {
      img_size: 224,
      patch_size: 16,
      in_chans: 3,
      embed_dim: 192,
      depth: 12,
      num_heads: 3,
      num_classes: 1000,
    },
  },
  {
    name: "vit-micro",
    batch: 128,
    model: {
      img_size: 32,
      patch_size: 4,
      in_chans: 3,
      embed_dim: 192,
      depth: 6,
      num_heads: 3,
      num_classes: 10,
    },
  },
  {
    name: "vit-fmnist",
    batch: 256,
    model: {
      img_size: 28,
      patch_size: 4,
      in_chans: 1,
      embed_dim: 64,
      depth: 4,
      num_heads: 4,
      num_classes: 10,
    },
  },
];

/** The resolved config of a bench model; its `model` has num_classes set (a VitConfig). */
export function benchConfig(spec: BenchConfig): Config & { model: VitConfig } {
  // One channel needs one mean and std (the bench's pixels are random: only their count matters).
  const data = spec.model.in_chans === 1 ? { mean: [0.5], std: [0.5] } : {};
  return resolveConfig({ model: { ...ARCH, ...spec.model }, data }, { source: spec.name }) as Config & {
    model: VitConfig;
  };
}
