/**
 * The timm state dict a model config implies: every key `VisionTransformer.state_dict()` (or
 * `VisionTransformerDistilled`) has for it, with its PyTorch shape. Exporters check a state dict
 * against this before writing a file another program will load.
 */
import type { ModelConfig } from "../config/schema.js";
import { DataError } from "../errors.js";
import type { TensorData } from "./safetensors.js";

/** The config keys that decide the architecture (not dropout, init or pretrained path). */
export type ArchConfig = Pick<
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
  | "representation_size"
  | "distilled"
> & { num_classes: number };

/** Sizes every exporter derives from the config, named as in timm. */
export interface ArchSizes {
  gridSize: number;
  numPatches: number;
  numPrefixTokens: number;
  seqLen: number;
  headDim: number;
  mlpHidden: number;
  /** Width of the features the head sees: representation_size or embed_dim. */
  numFeatures: number;
}

export function archSizes(cfg: ArchConfig): ArchSizes {
  if (cfg.embed_dim % cfg.num_heads !== 0) {
    throw new DataError(`embed_dim ${cfg.embed_dim} is not divisible by num_heads ${cfg.num_heads}`);
  }
  if (cfg.img_size % cfg.patch_size !== 0) {
    throw new DataError(`img_size ${cfg.img_size} is not a multiple of patch_size ${cfg.patch_size}`);
  }
  if (cfg.global_pool === "token" && !cfg.class_token) {
    throw new DataError("global_pool token needs class_token: true");
  }
  // timm's VisionTransformerDistilled reads tokens 0 and 1 itself: no pooling, no pre-logits layer.
  if (
    cfg.distilled &&
    (!cfg.class_token || cfg.global_pool !== "token" || cfg.representation_size !== null)
  ) {
    throw new DataError(
      "a distilled model needs class_token: true, global_pool: token and no representation_size",
    );
  }
  const gridSize = cfg.img_size / cfg.patch_size;
  const numPatches = gridSize * gridSize;
  const numPrefixTokens = (cfg.class_token ? 1 : 0) + (cfg.distilled ? 1 : 0);
  return {
    gridSize,
    numPatches,
    numPrefixTokens,
    seqLen: numPrefixTokens + numPatches,
    headDim: cfg.embed_dim / cfg.num_heads,
    // timm: int(dim * mlp_ratio)
    mlpHidden: Math.floor(cfg.embed_dim * cfg.mlp_ratio),
    numFeatures: cfg.representation_size ?? cfg.embed_dim,
  };
}

/** Key -> shape, in timm's state_dict order. */
export function timmParameterShapes(cfg: ArchConfig): Map<string, number[]> {
  const { seqLen, mlpHidden, numFeatures } = archSizes(cfg);
  const D = cfg.embed_dim;
  const shapes = new Map<string, number[]>();
  const linear = (name: string, out: number, inp: number, bias = true) => {
    shapes.set(`${name}.weight`, [out, inp]);
    if (bias) shapes.set(`${name}.bias`, [out]);
  };
  const norm = (name: string) => {
    shapes.set(`${name}.weight`, [D]);
    shapes.set(`${name}.bias`, [D]);
  };
  if (cfg.class_token) shapes.set("cls_token", [1, 1, D]);
  if (cfg.distilled) shapes.set("dist_token", [1, 1, D]);
  shapes.set("pos_embed", [1, seqLen, D]);
  shapes.set("patch_embed.proj.weight", [D, cfg.in_chans, cfg.patch_size, cfg.patch_size]);
  shapes.set("patch_embed.proj.bias", [D]);
  for (let i = 0; i < cfg.depth; i++) {
    norm(`blocks.${i}.norm1`);
    linear(`blocks.${i}.attn.qkv`, 3 * D, D, cfg.qkv_bias);
    linear(`blocks.${i}.attn.proj`, D, D);
    norm(`blocks.${i}.norm2`);
    linear(`blocks.${i}.mlp.fc1`, mlpHidden, D);
    linear(`blocks.${i}.mlp.fc2`, D, mlpHidden);
  }
  // timm: global_pool avg puts the LayerNorm after pooling (fc_norm) and drops the final norm.
  norm(cfg.global_pool === "avg" ? "fc_norm" : "norm");
  if (cfg.representation_size !== null) linear("pre_logits.fc", cfg.representation_size, D);
  if (cfg.num_classes > 0) {
    linear("head", cfg.num_classes, numFeatures);
    if (cfg.distilled) linear("head_dist", cfg.num_classes, numFeatures);
  }
  return shapes;
}

/**
 * Throws one DataError listing every missing, unexpected and wrongly shaped tensor, so a file
 * from another architecture (or with Hugging Face names) is named as such, not failed on late.
 */
export function checkTimmStateDict(
  stateDict: ReadonlyMap<string, TensorData>,
  cfg: ArchConfig,
  source: string,
): void {
  const expected = timmParameterShapes(cfg);
  const missing = [...expected.keys()].filter((k) => !stateDict.has(k));
  const unexpected = [...stateDict.keys()].filter((k) => !expected.has(k));
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing ${list(missing)}`);
  if (unexpected.length > 0) problems.push(`unexpected ${list(unexpected)}`);
  for (const [key, shape] of expected) {
    const t = stateDict.get(key);
    if (!t) continue;
    if (!sameShape(t.shape, shape)) {
      problems.push(`"${key}" has shape [${t.shape}] but the config needs [${shape}]`);
    } else if (t.data.length !== shape.reduce((a, b) => a * b, 1)) {
      problems.push(`"${key}" has ${t.data.length} values for shape [${shape}]`);
    }
  }
  if (problems.length > 0) {
    throw new DataError(`${source}: not the state dict of ${describe(cfg)}: ${problems.join("; ")}`);
  }
}

function describe(cfg: ArchConfig): string {
  const kind = cfg.distilled ? "a distilled DeiT" : "a ViT";
  return `${kind} (img ${cfg.img_size}, patch ${cfg.patch_size}, embed_dim ${cfg.embed_dim}, depth ${cfg.depth}, ${cfg.num_classes} classes)`;
}

function list(keys: string[]): string {
  const shown = keys.slice(0, 4).map((k) => `"${k}"`);
  return keys.length > 4 ? `${shown.join(", ")} and ${keys.length - 4} more` : shown.join(", ");
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
