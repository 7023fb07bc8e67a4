/**
 * timm's VisionTransformer (and DeiT's VisionTransformerDistilled), with timm's parameter names,
 * layouts and numerics (test/fixtures/timm-parity pins them):
 *
 *   x [B, H, W, C] -> patch_embed -> [B, N, D]
 *   tokens = concat([cls_token, dist_token, patches]) + pos_embed -> pos_drop      [B, T, D]
 *   blocks (pre-norm) -> norm (an identity when fc_norm is used)                    forwardFeatures
 *   pool (token: t[:, 0]; avg: mean of the patch tokens) -> fc_norm -> pre_logits -> head
 *   distilled: head(t[:, 0]) and head_dist(t[:, 1]); both in training, their mean in eval.
 */
import * as tf from "@tensorflow/tfjs";
import { type ModelConfig, modelConfigProblems } from "../config/schema.js";
import { ConfigError } from "../errors.js";
import { initParameters } from "./init.js";
import { Block } from "./layers/block.js";
import { dropPathRates } from "./layers/drop_path.js";
import { dropout } from "./layers/dropout.js";
import { LayerNorm } from "./layers/layer_norm.js";
import { Linear } from "./layers/linear.js";
import { PatchEmbed } from "./layers/patch_embed.js";
import { PreLogits } from "./layers/pre_logits.js";
import { ForwardContext, Identity, type Layer, Module, Sequential } from "./module.js";

/** A model config whose class count is known (the data decided it). */
export type VitConfig = ModelConfig & { num_classes: number };

/** Logits, or in training a distilled model's two heads. */
export type ModelOutput = tf.Tensor2D | { logits: tf.Tensor2D; distLogits: tf.Tensor2D };

export interface ForwardOptions {
  training: boolean;
  /**
   * Drives every dropout and drop-path draw of the call, so a training step is a pure function of
   * its inputs. Without it each call draws new masks from a counter kept by the model.
   */
  seed?: number;
  /** Receives each sub-module's output by its timm module path (`blocks.0.attn.attn_drop`), like a forward hook. */
  capture?: (name: string, output: tf.Tensor) => void;
}

function checkConfig(cfg: VitConfig): void {
  const found = modelConfigProblems(cfg);
  if (found.length > 0) throw new ConfigError(found.map((p) => `model.${p.key}: ${p.message}`).join("\n"));
}

export class VisionTransformer extends Module {
  readonly numPrefixTokens: number;
  /** Width of the features the head sees: representation_size, or embed_dim. */
  readonly numFeatures: number;
  readonly numClasses: number;
  private readonly prefixTokens: string[];
  private readonly patch_embed: PatchEmbed;
  private readonly pos_drop: Layer;
  readonly blocks: Sequential;
  private readonly norm: Layer;
  private readonly fc_norm: Layer;
  private readonly pre_logits: Layer;
  private readonly head: Layer;
  private readonly head_dist: Layer | null;
  private readonly moduleNames: Map<Module, string>;
  private unseededCalls = 0;

  constructor(readonly cfg: VitConfig) {
    super();
    checkConfig(cfg);
    const dim = cfg.embed_dim;
    // timm: fc_norm replaces the final norm when the tokens are averaged.
    const useFcNorm = cfg.global_pool === "avg";
    this.prefixTokens = [cfg.class_token && "cls_token", cfg.distilled && "dist_token"].filter(
      (name): name is string => typeof name === "string",
    );
    this.numPrefixTokens = this.prefixTokens.length;
    this.numFeatures = cfg.representation_size ?? dim;
    this.numClasses = cfg.num_classes;

    const patchEmbed = new PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, dim);
    // Registration order = timm's state_dict order: own parameters first, then children.
    if (cfg.class_token) this.addParam("cls_token", [1, 1, dim], "token");
    this.addParam("pos_embed", [1, this.numPrefixTokens + patchEmbed.numPatches, dim], "pos_embed");
    if (cfg.distilled) this.addParam("dist_token", [1, 1, dim], "token");
    this.patch_embed = this.addModule("patch_embed", patchEmbed);
    this.pos_drop = this.addModule("pos_drop", dropout(cfg.drop_rate));
    const blocks = dropPathRates(cfg.drop_path_rate, cfg.depth).map(
      (rate) =>
        new Block({
          dim,
          numHeads: cfg.num_heads,
          mlpRatio: cfg.mlp_ratio,
          qkvBias: cfg.qkv_bias,
          drop: cfg.drop_rate,
          attnDrop: cfg.attn_drop_rate,
          dropPath: rate,
        }),
    );
    this.blocks = this.addModule("blocks", new Sequential(blocks));
    this.norm = this.addModule("norm", useFcNorm ? new Identity() : new LayerNorm(dim));
    this.fc_norm = this.addModule("fc_norm", useFcNorm ? new LayerNorm(dim) : new Identity());
    this.pre_logits = this.addModule(
      "pre_logits",
      cfg.representation_size ? new PreLogits(dim, cfg.representation_size) : new Identity(),
    );
    const classifier = () =>
      cfg.num_classes > 0 ? new Linear(this.numFeatures, cfg.num_classes) : new Identity();
    this.head = this.addModule("head", classifier());
    this.head_dist = cfg.distilled ? this.addModule("head_dist", classifier()) : null;
    this.moduleNames = new Map([...this.namedModules()].map(([name, module]) => [module, name]));
  }

  get gridSize(): [number, number] {
    return this.patch_embed.gridSize;
  }

  /** Parameters timm exempts from weight decay (besides biases and norms, which have rank 1). */
  noWeightDecay(): Set<string> {
    return new Set(["pos_embed", "cls_token", "dist_token"]);
  }

  /** `[B, H, W, C]` -> logits `[B, K]` (features `[B, numFeatures]` when num_classes is 0). */
  forward(x: tf.Tensor4D, opts: ForwardOptions): ModelOutput {
    return tf.tidy(() => {
      const ctx = this.context(opts);
      return this.classify(this.features(x, ctx), ctx, false) as ModelOutput;
    });
  }

  /** `[B, H, W, C]` -> the final-norm token features `[B, T, D]`. */
  forwardFeatures(x: tf.Tensor4D, opts: ForwardOptions = { training: false }): tf.Tensor3D {
    return tf.tidy(() => this.features(x, this.context(opts)) as tf.Tensor3D);
  }

  /** Token features `[B, T, D]` -> logits, or with `preLogits` the pooled features that feed the head. */
  forwardHead(x: tf.Tensor3D, opts: Partial<ForwardOptions> & { preLogits?: boolean } = {}): ModelOutput {
    return tf.tidy(
      () =>
        this.classify(x, this.context({ training: false, ...opts }), opts.preLogits ?? false) as ModelOutput,
    );
  }

  private context(opts: ForwardOptions): ForwardContext {
    const capture = opts.capture;
    return new ForwardContext(
      opts.training,
      opts.seed ?? this.unseededCalls++,
      capture && ((layer, output) => capture(this.moduleNames.get(layer)!, output)),
    );
  }

  private features(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const patches = this.patch_embed.call(x, ctx); // [B, N, D]
    const batch = x.shape[0];
    const prefix = this.prefixTokens.map((name) => tf.tile(this.param(name), [batch, 1, 1])); // [B, 1, D] each
    const tokens = prefix.length > 0 ? tf.concat([...prefix, patches], 1) : patches;
    const h = this.pos_drop.call(tf.add(tokens, this.param("pos_embed")), ctx); // [B, T, D]
    return this.norm.call(this.blocks.call(h, ctx), ctx);
  }

  private classify(x: tf.Tensor, ctx: ForwardContext, preLogits: boolean): tf.Tensor | ModelOutput {
    if (this.head_dist) {
      const [cls, dist] = [token(x, 0), token(x, 1)];
      if (preLogits) return tf.div(tf.add(cls, dist), 2);
      const logits = this.head.call(cls, ctx) as tf.Tensor2D;
      const distLogits = this.head_dist.call(dist, ctx) as tf.Tensor2D;
      return ctx.training ? { logits, distLogits } : tf.div(tf.add(logits, distLogits), 2);
    }
    const features = this.pre_logits.call(this.fc_norm.call(this.pool(x), ctx), ctx);
    return preLogits ? features : this.head.call(features, ctx);
  }

  /** `[B, T, D] -> [B, D]`: the class token, or the mean of the patch tokens. */
  private pool(x: tf.Tensor): tf.Tensor {
    if (this.cfg.global_pool === "token") return token(x, 0);
    const [b, t, d] = x.shape;
    const n = this.numPrefixTokens;
    return tf.mean(tf.slice(x, [0, n, 0], [b, t - n, d]), 1);
  }
}

/** Token `i` of `[B, T, D]` as `[B, D]`. */
function token(x: tf.Tensor, i: number): tf.Tensor {
  const [b, , d] = x.shape;
  return tf.reshape(tf.slice(x, [0, i, 0], [b, 1, d]), [b, d]);
}

/** A model with timm's (or jax's, per `weight_init`) initialization; the same seed gives the same weights. */
export function createModel(cfg: VitConfig, opts: { seed: number }): VisionTransformer {
  const model = new VisionTransformer(cfg);
  initParameters(model, cfg.weight_init, opts.seed);
  return model;
}
