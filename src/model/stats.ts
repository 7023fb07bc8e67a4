/**
 * Size and cost of a model without allocating it: parameters are counted from the specs the
 * model's modules declare (the same ones `createModel` allocates), so the count cannot drift.
 *
 * `gflops` follows timm / fvcore / the DeiT paper: it counts multiply-accumulates (1 MAC = "1 FLOP")
 * of the matMuls (patch embedding, qkv, q k^T, attn v, proj, MLP, pre-logits, heads) for one image;
 * norms, softmax and GELU are left out. vit_base_patch16_224 is 17.6 "GFLOPs" (DeiT-B's 17.6).
 * Multiply by 2 for arithmetic FLOPs, and by about 3 for a training step.
 */
import type { ModelConfig } from "../config/schema.js";
import { VisionTransformer } from "./vision_transformer.js";

export interface ModelStats {
  params: number;
  /** Multiply-accumulates of one forward pass of one image. */
  macs: number;
  /** `macs / 1e9`, the unit timm and fvcore print as "GFLOPs". */
  gflops: number;
}

export function modelStats(cfg: ModelConfig, numClasses: number): ModelStats {
  const model = new VisionTransformer({ ...cfg, num_classes: numClasses });
  const dim = cfg.embed_dim;
  const patches = model.gridSize[0] * model.gridSize[1];
  const tokens = patches + model.numPrefixTokens;
  const hidden = Math.floor(dim * cfg.mlp_ratio);
  const patchEmbed = patches * cfg.in_chans * cfg.patch_size ** 2 * dim;
  // qkv + proj + fc1 + fc2 per token, and q k^T + attn v over all heads.
  const block = tokens * (4 * dim * dim + 2 * dim * hidden) + 2 * tokens * tokens * dim;
  const preLogits = cfg.representation_size ? dim * cfg.representation_size : 0;
  const heads = (cfg.distilled ? 2 : 1) * model.numFeatures * numClasses;
  const macs = patchEmbed + cfg.depth * block + preLogits + heads;
  return { params: model.numParams(), macs, gflops: macs / 1e9 };
}
