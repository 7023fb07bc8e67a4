/**
 * How much memory a model needs, from its config alone (nothing is allocated: a config asking for
 * a million blocks is refused before the first one exists). A pure function, fitted to the peak
 * RSS bench/README.md measured for whole training steps on wasm:
 *
 *   vit_tiny_patch16_224, batch 32: 3095 MB   vit_tiny_patch4_32, batch 128: 2143 MB
 *   vit_micro_patch4_28_gray, batch 256: 695 MB
 *
 * and within 10% of each (test/memory.test.ts). It is a guard against absurd sizes, not a tuner.
 */
import type { ModelConfig } from "../config/schema.js";

const F32 = 4;
const MB = 2 ** 20;

/** The process before any model: Node, tfjs, the wasm module, the data loader's buffers. */
export const RUNTIME_BYTES = 200 * MB;

/**
 * Floats kept per token per block by a training step: the inputs of each LayerNorm and Linear,
 * the qkv output, the GELU input and output (the D and H terms), and the attention probabilities
 * (heads x T), plus the gradients and temporaries alive at the peak of the backward pass.
 */
const TRAIN_FLOATS = { perDim: 27, perHidden: 5.5, perAttention: 1.4 };
/** Inference keeps one block's output and temporaries at a time. */
const INFER_FLOATS = { perDim: 8, perHidden: 2, perAttention: 2 };

export interface MemoryEstimate {
  params: number;
  /** Weights, and in training their gradients, optimizer moments and EMA copy. */
  paramBytes: number;
  activationBytes: number;
  runtimeBytes: number;
  totalBytes: number;
}

export interface MemoryOptions {
  numClasses: number;
  batchSize: number;
  /** A training step (activations kept for the backward pass); false: a forward pass. */
  training: boolean;
  /** Float tensors the optimizer keeps per parameter: AdamW 2, SGD with momentum 1. */
  optimizerSlots?: number;
  ema?: boolean;
}

/** Parameters of the ViT `cfg` with `numClasses` outputs, counted from the shapes timm gives them. */
export function countParams(cfg: ModelConfig, numClasses: number): number {
  const d = cfg.embed_dim;
  const h = Math.floor(d * cfg.mlp_ratio);
  const patches = (cfg.img_size / cfg.patch_size) ** 2;
  const prefix = (cfg.class_token ? 1 : 0) + (cfg.distilled ? 1 : 0);
  const norm = 2 * d;
  const block =
    norm + (3 * d * d + (cfg.qkv_bias ? 3 * d : 0)) + (d * d + d) + norm + (d * h + h) + (h * d + d);
  const features = cfg.representation_size ?? d;
  const preLogits = cfg.representation_size ? d * features + features : 0;
  const head = numClasses > 0 ? features * numClasses + numClasses : 0;
  return (
    prefix * d + // cls_token, dist_token
    (prefix + patches) * d + // pos_embed
    cfg.in_chans * cfg.patch_size ** 2 * d +
    d + // patch_embed
    cfg.depth * block +
    norm + // norm or fc_norm
    preLogits +
    (cfg.distilled ? 2 : 1) * head
  );
}

export function estimateMemory(cfg: ModelConfig, o: MemoryOptions): MemoryEstimate {
  const params = countParams(cfg, o.numClasses);
  const copies = o.training ? 2 + (o.optimizerSlots ?? 2) + (o.ema ? 1 : 0) : 1;
  const d = cfg.embed_dim;
  const h = Math.floor(d * cfg.mlp_ratio);
  const tokens = (cfg.img_size / cfg.patch_size) ** 2 + (cfg.class_token ? 1 : 0) + (cfg.distilled ? 1 : 0);
  const f = o.training ? TRAIN_FLOATS : INFER_FLOATS;
  const perToken = f.perDim * d + f.perHidden * h + f.perAttention * cfg.num_heads * tokens;
  const blocks = o.training ? cfg.depth : 1;
  const paramBytes = F32 * params * copies;
  const activationBytes = F32 * o.batchSize * tokens * blocks * perToken;
  return {
    params,
    paramBytes,
    activationBytes,
    runtimeBytes: RUNTIME_BYTES,
    totalBytes: RUNTIME_BYTES + paramBytes + activationBytes,
  };
}
