/**
 * Starting a model from pretrained weights, as timm's `load_pretrained` + `checkpoint_filter_fn`
 * do: a safetensors file with timm names (a timm hub file, or a checkpoint of this framework) or
 * Hugging Face names (detected, see src/weights/keymaps.ts), or an original Google ViT `.npz`
 * (src/io/jax_vit.ts). Then, for the model at hand:
 *
 * - pos_embed is resampled when the file's patch grid differs (bicubic, antialiased; prefix tokens
 *   kept), so weights trained at 224 px start a 384 px (or 96 px) model;
 * - a classifier with another class count, or none in the file, is left at the model's own init
 *   with a warning (head and head_dist; a DeiTForImageClassification file has no head_dist);
 * - a 3-channel patch embedding is summed over its channels for a 1-channel model (timm's
 *   adapt_input_conv);
 * - everything else must match: shapes of another architecture are one DataError naming the
 *   differences; missing and unexpected keys are one DataError listing both, or a warning with
 *   `allowPartial`.
 *
 * A config beside the weights is read when present (src/io/side_config.ts): it gives num_heads
 * (which no tensor shape shows, so it is checked), the class names, and for timm's, the
 * preprocessing.
 */

import { PRESETS } from "../config/presets.js";
import type { DataConfig, ModelConfig } from "../config/schema.js";
import { DataError, UsageError } from "../errors.js";
import { isNpz, readNpz } from "../io/npz.js";
import { readSafetensors } from "../io/safetensors.js";
import { LAYER_NORM_EPS } from "../model/layers/layer_norm.js";
import { resamplePosEmbed } from "../model/layers/pos_embed.js";
import { compareStateDict, listKeys } from "../model/module.js";
import type { VisionTransformer } from "../model/vision_transformer.js";
import type { StateDict, TensorData } from "../tensor.js";
import { jaxVitToTimm } from "./jax_vit.js";
import { toTimmNames } from "./keymaps.js";
import { readSideConfig, type SideConfig } from "./side_config.js";

export type WeightsFormat = "timm" | "hf" | "npz";

export interface PretrainedWeights {
  file: string;
  format: WeightsFormat;
  /** With timm names, float32. */
  stateDict: StateDict;
  /** Conversion remarks (e.g. a dropped Hugging Face pooler). */
  notes: string[];
  side: SideConfig | null;
}

export interface PretrainedOptions {
  /** Load what fits; missing and unexpected keys become a warning (missing ones keep the model's init). */
  allowPartial?: boolean;
  /** Receives each note and warning line (default: stderr). */
  log?: (line: string) => void;
}

export interface PretrainedReport {
  format: WeightsFormat;
  /** The file's patch grid when pos_embed was resampled to the model's; null when it fit. */
  resampledFrom: [number, number] | null;
  /** Classifiers left at the model's init ("head", "head_dist"). */
  reinitialized: string[];
  /** Only with allowPartial: what did not fit. */
  missing: string[];
  unexpected: string[];
  /** The file's class names, when the model kept its classifier and the count matches. */
  classNames: string[] | null;
}

/** timm's LayerNorm eps, which this framework always uses. */
const PREFIX_TOKENS = ["cls_token", "dist_token"];

/** Reads a weights file (safetensors or .npz) and its side config, with timm names. */
export function readPretrained(file: string): PretrainedWeights {
  const side = readSideConfig(file);
  if (isNpz(file)) {
    return { file, format: "npz", stateDict: jaxVitToTimm(readNpz(file), file), notes: [], side };
  }
  const { stateDict, naming, notes } = toTimmNames(readSafetensors(file).tensors, file);
  return { file, format: naming.naming, stateDict, notes, side };
}

/** Loads `source` into `model` (see the file comment); the model must be initialized. */
export function loadPretrained(
  model: VisionTransformer,
  source: string | PretrainedWeights,
  opts: PretrainedOptions = {},
): PretrainedReport {
  const weights = typeof source === "string" ? readPretrained(source) : source;
  const { stateDict, report } = adaptStateDict(weights, model, opts);
  model.loadStateDict(stateDict, { strict: false, source: weights.file });
  return report;
}

/**
 * The file's tensors fitted to `model`'s parameters (a subset of them: the re-initialized heads
 * and, with allowPartial, missing keys are absent). Needs only the model's parameter specs, so
 * `vit import` converts without allocating the model.
 */
export function adaptStateDict(
  weights: PretrainedWeights,
  model: VisionTransformer,
  opts: PretrainedOptions = {},
): { stateDict: StateDict; report: PretrainedReport } {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const { file, side } = weights;
  const cfg = model.cfg;
  for (const note of weights.notes) log(`note: ${note}`);
  if (side?.model.num_heads !== undefined && side.model.num_heads !== cfg.num_heads) {
    throw new DataError(
      `${side.file}: the weights have ${side.model.num_heads} attention heads but the model has num_heads ${cfg.num_heads}`,
    );
  }
  if (side?.layerNormEps != null && side.layerNormEps !== LAYER_NORM_EPS) {
    log(
      `warning: ${side.file}: layer_norm_eps ${side.layerNormEps}; this framework uses timm's 1e-6, so outputs can differ slightly from transformers'`,
    );
  }
  const own = model.paramShapes();
  const sd: StateDict = new Map(weights.stateDict);

  const fileTokens = PREFIX_TOKENS.filter((k) => sd.has(k));
  const modelTokens = PREFIX_TOKENS.filter((k) => own.has(k));
  if (sd.has("pos_embed") && fileTokens.join() !== modelTokens.join()) {
    throw new DataError(
      `${file}: the weights have prefix tokens [${fileTokens.join(", ")}] but the model [${modelTokens.join(", ")}]: set model.class_token / model.distilled to match`,
    );
  }
  adaptInputChannels(sd, own, log);
  const resampledFrom = resamplePositions(sd, model, file, log);
  const reinitialized = replaceHeads(sd, own, file, log);

  const comparison = compareStateDict(own, sd);
  const mismatched = comparison.wrongShape.map(
    (name) => `${name} [${sd.get(name)!.shape}] vs the model's [${own.get(name)}]`,
  );
  if (mismatched.length > 0) {
    throw new DataError(
      `${file}: weights of another architecture${archDiff(sd, cfg)}: ${listKeys(mismatched, 3)}`,
    );
  }
  const reinitKeys = new Set(reinitialized.flatMap((h) => [`${h}.weight`, `${h}.bias`]));
  const missing = comparison.missing.filter((k) => !reinitKeys.has(k));
  const { unexpected } = comparison;
  if (missing.length + unexpected.length > 0) {
    const problems = [
      missing.length > 0 && `${missing.length} missing (${listKeys(missing, 5)})`,
      unexpected.length > 0 && `${unexpected.length} unexpected (${listKeys(unexpected, 5)})`,
    ].filter(Boolean);
    const text = `${problems.join(", ")} key(s)${archDiff(sd, cfg)}`;
    if (unexpected.length === sd.size) throw new DataError(`${file}: no tensor fits the model: ${text}`);
    if (!opts.allowPartial) throw new DataError(`${file}: does not fit the model: ${text}`);
    log(`warning: ${file}: loading what fits: ${text}; missing weights keep the model's init`);
  }
  for (const key of unexpected) sd.delete(key);
  const names = side?.classNames ?? null;
  const keepsNames = names !== null && !reinitialized.includes("head") && names.length === model.numClasses;
  return {
    stateDict: sd,
    report: {
      format: weights.format,
      resampledFrom,
      reinitialized,
      missing: opts.allowPartial ? missing : [],
      unexpected: opts.allowPartial ? unexpected : [],
      classNames: keepsNames ? names : null,
    },
  };
}

/** timm's adapt_input_conv for in_chans 1: an RGB patch embedding summed over its channels. */
function adaptInputChannels(sd: StateDict, own: Map<string, number[]>, log: (line: string) => void): void {
  const key = "patch_embed.proj.weight";
  const t = sd.get(key);
  const want = own.get(key);
  if (!t || !want || t.shape.length !== 4 || t.shape[1] !== 3 || want[1] !== 1) return;
  const [d, c, ph, pw] = t.shape;
  const area = ph * pw;
  const data = new Float32Array(d * area);
  for (let o = 0; o < d; o++) {
    for (let ch = 0; ch < c; ch++) {
      for (let i = 0; i < area; i++) data[o * area + i] += t.data[(o * c + ch) * area + i];
    }
  }
  sd.set(key, { shape: [d, 1, ph, pw], data });
  log(`note: ${key}: summed its 3 input channels for a 1-channel model (timm's adapt_input_conv)`);
}

/** Resamples pos_embed to the model's grid when the sizes differ; returns the file's grid then. */
function resamplePositions(
  sd: StateDict,
  model: VisionTransformer,
  file: string,
  log: (line: string) => void,
): [number, number] | null {
  const t = sd.get("pos_embed");
  const prefix = model.numPrefixTokens;
  const [gh, gw] = model.gridSize;
  if (t?.shape.length !== 3 || t.shape[1] === prefix + gh * gw || t.shape[2] !== model.cfg.embed_dim) {
    return null;
  }
  const grid = squareGrid(t.shape[1] - prefix);
  if (grid === null) {
    throw new DataError(
      `${file}: pos_embed has ${t.shape[1]} tokens, not ${prefix} prefix token(s) + a square patch grid`,
    );
  }
  sd.set("pos_embed", resamplePosEmbed(t, [gh, gw], [grid, grid], prefix));
  log(
    `note: pos_embed resampled from a ${grid}x${grid} to a ${gh}x${gw} patch grid (bicubic, antialiased, as timm)`,
  );
  return [grid, grid];
}

/** Drops classifiers that cannot be used (class count differs, or absent); returns their names. */
function replaceHeads(
  sd: StateDict,
  own: Map<string, number[]>,
  file: string,
  log: (line: string) => void,
): string[] {
  const reinitialized: string[] = [];
  const hasClassifier = own.has("head.weight");
  for (const head of ["head", "head_dist"]) {
    const want = own.get(`${head}.weight`);
    const t = sd.get(`${head}.weight`);
    if (!hasClassifier && t) {
      sd.delete(`${head}.weight`);
      sd.delete(`${head}.bias`);
      log(`note: ${head} of ${file} not loaded: the model has no classifier (num_classes 0)`);
    }
    // Without a classifier there is nothing to re-initialize; a head_dist the model lacks is unexpected.
    if (!want) continue;
    let reason: string | null = null;
    if (!t) reason = `${file} has no ${head}`;
    else if (t.shape.length === 2 && t.shape[1] === want[1] && t.shape[0] !== want[0]) {
      reason = `the file's head has ${t.shape[0]} classes, the model's ${want[0]}`;
    }
    if (reason === null) continue;
    sd.delete(`${head}.weight`);
    sd.delete(`${head}.bias`);
    reinitialized.push(head);
    log(`warning: ${head} re-initialized: ${reason}`);
  }
  return reinitialized;
}

/** The architecture keys a timm state dict shows (num_heads shows in no shape). */
export function archFromStateDict(sd: ReadonlyMap<string, TensorData>): Partial<ModelConfig> {
  const arch: Partial<ModelConfig> = {};
  const patch = sd.get("patch_embed.proj.weight")?.shape;
  if (patch?.length === 4) {
    [arch.embed_dim, arch.in_chans, arch.patch_size] = [patch[0], patch[1] as 1 | 3, patch[2]];
  }
  const blocks = [...sd.keys()].map((k) => /^blocks\.(\d+)\./.exec(k)).filter((m) => m !== null);
  if (blocks.length > 0) arch.depth = Math.max(...blocks.map((m) => Number(m[1]))) + 1;
  const fc1 = sd.get("blocks.0.mlp.fc1.weight")?.shape;
  if (fc1 && arch.embed_dim) arch.mlp_ratio = fc1[0] / arch.embed_dim;
  if (sd.has("blocks.0.attn.qkv.weight")) arch.qkv_bias = sd.has("blocks.0.attn.qkv.bias");
  arch.class_token = sd.has("cls_token");
  arch.distilled = sd.has("dist_token");
  arch.global_pool = sd.has("fc_norm.weight") ? "avg" : "token";
  arch.representation_size = sd.get("pre_logits.fc.weight")?.shape[0] ?? null;
  arch.num_classes = sd.get("head.weight")?.shape[0] ?? 0;
  const tokens = sd.get("pos_embed")?.shape[1];
  const grid =
    tokens === undefined ? null : squareGrid(tokens - Number(arch.class_token) - Number(arch.distilled));
  if (grid !== null && arch.patch_size) arch.img_size = grid * arch.patch_size;
  return arch;
}

/**
 * A raw model + data config for weights that come without one (`vit import` without --model /
 * --config): the shapes, the side config, and the preset with the same architecture, whose
 * preprocessing is what such weights were trained with. Throws when num_heads stays unknown.
 */
export function configFromWeights(weights: PretrainedWeights): {
  model: Record<string, unknown>;
  data: Partial<DataConfig>;
  notes: string[];
} {
  const model: Record<string, unknown> = { ...archFromStateDict(weights.stateDict), ...weights.side?.model };
  const notes: string[] = [];
  const sameArch = (p: (typeof PRESETS)[number]) =>
    (["embed_dim", "depth", "patch_size", "mlp_ratio", "in_chans", "distilled"] as const).every(
      (k) => (p.model[k] ?? (k === "distilled" ? false : undefined)) === model[k],
    );
  const preset = weights.side?.preset ?? PRESETS.find(sameArch)?.name ?? null;
  if (preset !== null) {
    model.preset = preset;
    if (!weights.side?.preset) {
      notes.push(
        `preset ${preset} has the same architecture: its preprocessing (mean, std, crop_pct) is used`,
      );
    }
  } else if (model.num_heads === undefined) {
    throw new UsageError(
      `${weights.file}: cannot tell num_heads from the weights (no config.json beside them, no preset with embed_dim ${model.embed_dim} and depth ${model.depth}): give --model PRESET or --config FILE`,
    );
  }
  return { model, data: weights.side?.data ?? {}, notes };
}

/** How the file's architecture differs from the model's, as " (file: depth 12, model: depth 6)". */
function archDiff(sd: ReadonlyMap<string, TensorData>, cfg: ModelConfig): string {
  const arch = archFromStateDict(sd);
  const keys = [
    "embed_dim",
    "depth",
    "patch_size",
    "in_chans",
    "mlp_ratio",
    "qkv_bias",
    "global_pool",
    "representation_size",
  ] as const;
  const differ = keys.filter((k) => arch[k] !== undefined && arch[k] !== cfg[k]);
  if (differ.length === 0) return "";
  const show = (get: (k: (typeof keys)[number]) => unknown) => differ.map((k) => `${k} ${get(k)}`).join(", ");
  return ` (file: ${show((k) => arch[k])}; model: ${show((k) => cfg[k])})`;
}

function squareGrid(n: number): number | null {
  const g = Math.round(Math.sqrt(n));
  return g > 0 && g * g === n ? g : null;
}
