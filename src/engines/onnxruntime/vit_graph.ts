/**
 * timm's VisionTransformer (and DeiT's distilled variant) as ONNX ops: the one definition of the
 * model this engine runs, for `vit export` (./export.ts), inference sessions and the training step
 * (./train_graph.ts). Parameter names are timm's and layouts PyTorch's ([out, in] Linear weights,
 * taken through Gemm's transB), so weights move between a state dict and the graph untouched.
 *
 *   images -> patch_embed [B, N, D] -> concat(cls, dist, patches) + pos_embed [B, T, D]
 *   the residual stream as [B*T, D] rows (every Linear one 2-D Gemm) -> blocks -> norm
 *   pool (token 0, or the mean of the patch tokens -> fc_norm) -> pre_logits -> head(s)
 *
 * Training adds dropout and drop-path masks as graph inputs, in the order the tfjs model draws
 * them (src/model: pos_drop, then per block attn_drop, proj_drop, drop_path1, mlp.drop1,
 * mlp.drop2, drop_path2), so the host draws the same masks from the same seed.
 */
import { dropPathRates } from "../../model/layers/drop_path.js";
import { LAYER_NORM_EPS } from "../../model/layers/layer_norm.js";
import type { VisionTransformer } from "../../model/vision_transformer.js";
import { type Graph, MS_DOMAIN } from "./graph.js";

/** A dropout or drop-path mask the host draws (keepMask of `shape`'s size at keep 1 - rate). */
export interface MaskSpec {
  input: string;
  shape: number[];
  rate: number;
}

export interface ForwardOptions {
  /** The image input: [B, C, H, W] (nchw, the export's `pixel_values`) or [B, H, W, C] (the loader's). */
  image: string;
  layout: "nchw" | "nhwc";
  /** The graph value of a state-dict parameter (an initializer or a graph input). */
  param: (key: string) => string;
  /** Train mode: masks become inputs and LayerNormalization keeps its statistics for the backward pass. */
  training: boolean;
  /** onnxruntime's com.microsoft ops (Gelu, FusedMatMul) instead of plain ONNX (the export). */
  fused: boolean;
}

export interface ForwardResult {
  /** The class head's logits [B, K] (the pooled features [B, F] without a head), then head_dist's. */
  heads: string[];
  masks: MaskSpec[];
}

/** timm's VisionTransformer.forward; eval mode unless `opts.training`. */
export function vitForward(g: Graph, vit: VisionTransformer, opts: ForwardOptions): ForwardResult {
  const { cfg, numPrefixTokens } = vit;
  const f = new Forward(g, vit, opts);
  const N = vit.gridSize[0] * vit.gridSize[1];
  const T = numPrefixTokens + N;
  const D = cfg.embed_dim;

  let x = f.patchEmbed(); // [B, N, D]
  const prefix = (["cls_token", "dist_token"] as const).filter((k) => vit.paramShapes().has(k));
  if (prefix.length > 0) {
    // [1, 1, D] -> [B, 1, D] through a [B, 1, 1] shape taken from the input (the batch may be symbolic)
    const batch = g.op("Shape", [opts.image], "batch_size", { end: { int: 1 } });
    const shape = g.op("Concat", [batch, g.int64s([1, 1])], "prefix_shape", { axis: { int: 0 } });
    const tokens = prefix.map((k) => g.op("Expand", [opts.param(k), shape], `${k}.expand`));
    x = g.op("Concat", [...tokens, x], "tokens", { axis: { int: 1 } }); // [B, T, D]
  }
  x = g.op("Add", [x, opts.param("pos_embed")], "pos_embed.add");
  x = g.op("Reshape", [x, g.int64s([-1, D])], "rows"); // [B*T, D]
  x = f.dropout(x, "pos_drop", cfg.drop_rate);

  const rates = dropPathRates(cfg.drop_path_rate, cfg.depth);
  for (let i = 0; i < cfg.depth; i++) x = f.block(x, `blocks.${i}`, T, rates[i]);

  let features: string[];
  const tokens = (y: string) => g.op("Reshape", [y, g.int64s([-1, T, D])], "tokens_out"); // [B, T, D]
  if (cfg.global_pool === "avg") {
    // the mean of the patch tokens, then fc_norm (which replaces the final norm)
    let y = f.slice(tokens(x), numPrefixTokens, T, "patch_tokens"); // [B, N, D]
    y = g.op("ReduceMean", [y], "pool", { axes: { ints: [1] }, keepdims: { int: 0 } }); // [B, D]
    features = [f.layerNorm(y, "fc_norm")];
  } else {
    // the class token, and for DeiT the distillation token after it: [B, T, D] -> [B, D] each
    const y = tokens(f.layerNorm(x, "norm"));
    features = (cfg.distilled ? [0, 1] : [0]).map((t) =>
      g.op("Reshape", [f.slice(y, t, t + 1, `token_${t}`), g.int64s([-1, D])], `token_${t}.rows`),
    );
  }
  if (cfg.representation_size !== null) {
    features = features.map((h) => g.op("Tanh", [f.linear(h, "pre_logits.fc")], "pre_logits"));
  }
  if (cfg.num_classes > 0) features = features.map((h, i) => f.linear(h, i === 0 ? "head" : "head_dist"));
  return { heads: features, masks: f.masks };
}

/** The layers of the graph, each a few ops; shapes in the comments are per call. */
class Forward {
  readonly masks: MaskSpec[] = [];
  private readonly g: Graph;

  constructor(
    g: Graph,
    private readonly vit: VisionTransformer,
    private readonly opts: ForwardOptions,
  ) {
    this.g = g;
  }

  private has(key: string): boolean {
    return this.vit.paramShapes().has(key);
  }

  /** The image batch -> [B, N, D], patches row-major over the grid as timm's flatten(2). */
  patchEmbed(): string {
    const { g, opts } = this;
    const { patch_size: p, in_chans: C, embed_dim: D } = this.vit.cfg;
    const [gh, gw] = this.vit.gridSize;
    const [w, b] = [opts.param("patch_embed.proj.weight"), opts.param("patch_embed.proj.bias")];
    if (opts.layout === "nchw") {
      // [B, C, H, W] -> Conv (kernel = stride = P) [B, D, gh, gw] -> [B, D, N] -> [B, N, D]
      let x = g.op("Conv", [opts.image, w, b], "patch_embed.proj", {
        kernel_shape: { ints: [p, p] },
        strides: { ints: [p, p] },
      });
      x = g.op("Reshape", [x, g.int64s([0, D, -1])], "patch_embed.flatten");
      return g.op("Transpose", [x], "patch_embed", { perm: { ints: [0, 2, 1] } });
    }
    // [B, H, W, C] = [B*gh, P, gw, P*C] -> [B*gh, gw, P, P*C] -> [B*N, P*P*C]: each patch's (row, col,
    // channel) contiguous; the weight [D, C, P, P] is put in that order rather than the images in its.
    let x = g.op("Reshape", [opts.image, g.int64s([-1, p, gw, p * C])], "patch_embed.grid");
    x = g.op("Transpose", [x], "patch_embed.patches", { perm: { ints: [0, 2, 1, 3] } });
    x = g.op("Reshape", [x, g.int64s([-1, p * p * C])], "patch_embed.rows");
    let wr = g.op("Transpose", [w], "patch_embed.proj.weight_hwc", { perm: { ints: [0, 2, 3, 1] } });
    wr = g.op("Reshape", [wr, g.int64s([D, p * p * C])], "patch_embed.proj.weight_rows");
    x = g.op("Gemm", [x, wr, b], "patch_embed.proj", { transB: { int: 1 } }); // [B*N, D]
    return g.op("Reshape", [x, g.int64s([-1, gh * gw, D])], "patch_embed");
  }

  /** x + dropPath(attn(norm1(x))), then x + dropPath(mlp(norm2(x))); [B*T, D] -> [B*T, D]. */
  block(x: string, name: string, T: number, dropPath: number): string {
    const { g } = this;
    const { drop_rate: drop } = this.vit.cfg;
    let h = this.attention(this.layerNorm(x, `${name}.norm1`), `${name}.attn`, T);
    h = this.dropPath(h, `${name}.drop_path1`, dropPath, T);
    x = g.op("Add", [x, h], `${name}.attn_residual`);

    h = this.linear(this.layerNorm(x, `${name}.norm2`), `${name}.mlp.fc1`);
    h = this.dropout(this.gelu(h, `${name}.mlp.act`), `${name}.mlp.drop1`, drop);
    h = this.dropout(this.linear(h, `${name}.mlp.fc2`), `${name}.mlp.drop2`, drop);
    h = this.dropPath(h, `${name}.drop_path2`, dropPath, T);
    return g.op("Add", [x, h], name);
  }

  /** softmax((q * hd^-0.5) k^T) v per head, then proj; [B*T, D] -> [B*T, D]. */
  private attention(x: string, name: string, T: number): string {
    const { g } = this;
    const { embed_dim: D, num_heads: H, attn_drop_rate, drop_rate } = this.vit.cfg;
    const hd = D / H;
    let h = this.linear(x, `${name}.qkv`); // [B*T, 3D]: rows q | k | v, heads contiguous
    // [B*T, 3D] -> [B, T, 3, H, hd] -> [3, B, H, T, hd] -> q, k, v [B, H, T, hd]
    h = g.op("Reshape", [h, g.int64s([-1, T, 3, H, hd])], `${name}.qkv.split_heads`);
    h = g.op("Transpose", [h], `${name}.qkv.permute`, { perm: { ints: [2, 0, 3, 1, 4] } });
    const parts = g.opN(
      "Split",
      [h, g.int64s([1, 1, 1])],
      ["q", "k", "v"].map((p) => `${name}.${p}_1`),
      {
        axis: { int: 0 },
      },
    );
    const [q, k, v] = parts.map((y, i) =>
      g.op("Reshape", [y, g.int64s([-1, H, T, hd])], `${name}.${"qkv"[i]}`),
    );
    let a: string;
    if (this.opts.fused) {
      // one product with k's transpose and the scale folded in: [B, H, T, T]
      a = g.op(
        "FusedMatMul",
        [q, k],
        `${name}.scores`,
        { transB: { int: 1 }, alpha: { float: hd ** -0.5 } },
        MS_DOMAIN,
      );
    } else {
      // as timm: scale q before the product
      const qs = g.op("Mul", [q, g.floatScalar(hd ** -0.5)], `${name}.q_scaled`);
      const kt = g.op("Transpose", [k], `${name}.k_t`, { perm: { ints: [0, 1, 3, 2] } });
      a = g.op("MatMul", [qs, kt], `${name}.scores`);
    }
    a = g.op("Softmax", [a], `${name}.softmax`, { axis: { int: -1 } });
    a = this.dropout(a, `${name}.attn_drop`, attn_drop_rate);
    // [B, H, T, hd] -> [B, T, H, hd] -> [B*T, D]
    a = g.op("MatMul", [a, v], `${name}.context`);
    a = g.op("Transpose", [a], `${name}.context_t`, { perm: { ints: [0, 2, 1, 3] } });
    a = g.op("Reshape", [a, g.int64s([-1, D])], `${name}.merge_heads`);
    return this.dropout(this.linear(a, `${name}.proj`), `${name}.proj_drop`, drop_rate);
  }

  layerNorm(x: string, name: string): string {
    const { g } = this;
    const inputs = [x, this.opts.param(`${name}.weight`), this.opts.param(`${name}.bias`)];
    const attrs = { axis: { int: -1 }, epsilon: { float: LAYER_NORM_EPS } };
    if (!this.opts.training) return g.op("LayerNormalization", inputs, name, attrs);
    // Mean and 1/std as outputs too: the gradient rule reads them instead of recomputing them.
    return g.opN("LayerNormalization", inputs, [name, `${name}.mean`, `${name}.inv_std`], attrs)[0];
  }

  /** torch Linear y = x W^T + b on rows [M, in] -> [M, out], the weight in its [out, in] layout. */
  linear(x: string, name: string): string {
    const { g, opts } = this;
    const inputs = [x, opts.param(`${name}.weight`)];
    if (this.has(`${name}.bias`)) inputs.push(opts.param(`${name}.bias`));
    return g.op("Gemm", inputs, name, { transB: { int: 1 } });
  }

  /** Exact GELU, 0.5 x (1 + erf(x / sqrt 2)): onnxruntime's fused op, or as torch.onnx writes it before opset 20. */
  private gelu(x: string, name: string): string {
    const { g } = this;
    if (this.opts.fused) return g.op("Gelu", [x], name, {}, MS_DOMAIN);
    const e = g.op("Erf", [g.op("Div", [x, g.floatScalar(Math.SQRT2)], `${name}.div`)], `${name}.erf`);
    const y = g.op("Mul", [x, g.op("Add", [e, g.floatScalar(1)], `${name}.add`)], `${name}.mul`);
    return g.op("Mul", [y, g.floatScalar(0.5)], name);
  }

  /** Elementwise dropout: x * mask, the mask (0 or 1/keep per element) a graph input. */
  dropout(x: string, name: string, rate: number): string {
    if (!this.opts.training || rate === 0) return x;
    return this.g.op("Mul", [x, this.mask(name, this.g.shape(x), rate)], name);
  }

  /** Drop path: each sample's whole branch [T, D] times its mask value; [B*T, D] -> [B*T, D]. */
  private dropPath(x: string, name: string, rate: number, T: number): string {
    if (!this.opts.training || rate === 0) return x;
    const { g } = this;
    const D = this.vit.cfg.embed_dim;
    const samples = g.op("Reshape", [x, g.int64s([-1, T, D])], `${name}.samples`); // [B, T, D]
    const mask = this.mask(name, [g.shape(samples)[0], 1, 1], rate);
    return g.op("Reshape", [g.op("Mul", [samples, mask], `${name}.mul`), g.int64s([-1, D])], name);
  }

  private mask(name: string, shape: number[], rate: number): string {
    const input = this.g.input(`mask.${name}`, shape);
    this.masks.push({ input, shape, rate });
    return input;
  }

  /** x[:, start:end] of [B, T, D] -> [B, end - start, D]. */
  slice(x: string, start: number, end: number, name: string): string {
    const { g } = this;
    return g.op("Slice", [x, g.int64s([start]), g.int64s([end]), g.int64s([1])], name);
  }
}
