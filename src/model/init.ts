/**
 * timm's weight init for VisionTransformer, drawn from our own seeded generator (random.ts) so the
 * same seed gives the same weights on every backend. Each parameter has its own stream keyed by
 * (seed, name): adding a layer does not change the others' values.
 *
 * timm mode (`init_weights_vit_timm`):
 *   Linear weight trunc_normal(std 0.02, cut at +-2 absolute, i.e. +-100 sigma), bias 0;
 *   patch_embed.proj (a Conv2d timm leaves at PyTorch's default): weight and bias U(+-1/sqrt(fan_in));
 * jax mode (`init_weights_vit_jax`):
 *   Linear weight xavier_uniform, bias 0 (normal(1e-6) inside the MLP); head and head_dist zero;
 *   pre_logits.fc and patch_embed.proj lecun_normal (truncated at 2 sigma), bias 0;
 * both: LayerNorm 1 / 0, pos_embed trunc_normal(0.02), cls_token normal(1e-6), dist_token trunc_normal(0.02).
 */
import type { ModelConfig } from "../config/schema.js";
import { Rng } from "../random.js";
import type { Module, ParamSpec } from "./module.js";

export type WeightInit = ModelConfig["weight_init"];

/** Standard deviation of a standard normal truncated to [-2, 2] (timm's lecun_normal_ divides by it). */
const TRUNC2_STD = 0.87962566103423978;

function fill(n: number, draw: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = draw();
  return out;
}

/** The initial values of parameter `name`. */
export function initialValues(name: string, spec: ParamSpec, mode: WeightInit, seed: number): Float32Array {
  const rng = Rng.from(seed, name);
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const isWeight = name.endsWith("weight");
  const fanIn = spec.fanIn ?? 1;
  const zeros = () => 0;
  const normal = (std: number) => () => std * rng.normal();
  const truncNormal002 = () => 0.02 * rng.truncatedNormal(-100, 100);
  const uniform = (bound: number) => () => bound * (2 * rng.uniform() - 1);
  const lecunNormal = () => (Math.sqrt(1 / fanIn) / TRUNC2_STD) * rng.truncatedNormal(-2, 2);

  switch (spec.kind) {
    case "norm":
      return fill(n, isWeight ? () => 1 : zeros);
    case "pos_embed":
      return fill(n, truncNormal002);
    case "token":
      return fill(n, name === "cls_token" ? normal(1e-6) : truncNormal002);
    case "patch":
      if (mode === "jax") return fill(n, isWeight ? lecunNormal : zeros);
      // torch's Conv2d default (kaiming_uniform with a = sqrt 5), for the bias too.
      return fill(n, uniform(1 / Math.sqrt(fanIn)));
    case "linear":
      if (mode === "timm") return fill(n, isWeight ? truncNormal002 : zeros);
      if (name.startsWith("head")) return fill(n, zeros);
      if (name.startsWith("pre_logits")) return fill(n, isWeight ? lecunNormal : zeros);
      // xavier_uniform; a Linear weight is [fan_out, fan_in].
      if (isWeight) return fill(n, uniform(Math.sqrt(6 / (fanIn + spec.shape[0]))));
      return fill(n, name.includes("mlp") ? normal(1e-6) : zeros);
  }
}

export function initParameters(model: Module, mode: WeightInit, seed: number): void {
  model.initialize((name, spec) => initialValues(name, spec, mode, seed));
}
