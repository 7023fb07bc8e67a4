/**
 * State-dict names: timm <-> Hugging Face transformers (ViTModel, ViTForImageClassification,
 * DeiTModel, DeiTForImageClassification, DeiTForImageClassificationWithTeacher), and the HF
 * `config.json`. The renaming is the one transformers' own convert_{vit,deit}_timm_to_pytorch.py
 * scripts apply; tensors keep their layouts (both sides are PyTorch), except that HF splits timm's
 * fused `attn.qkv` into query / key / value (timm's rows are q | k | v).
 */
import * as fs from "node:fs";
import { z } from "zod";
import type { ModelConfig } from "../config/schema.js";
import { DataError } from "../errors.js";
import { LAYER_NORM_EPS } from "../model/layers/layer_norm.js";
import type { StateDict, TensorData } from "../tensor.js";

export interface DetectedNaming {
  naming: "timm" | "hf";
  /** HF only: "vit." / "deit." before the backbone keys, "" for a bare ViTModel / DeiTModel. */
  prefix: string;
}

export type HfArchitecture =
  | "ViTModel"
  | "ViTForImageClassification"
  | "DeiTModel"
  | "DeiTForImageClassification"
  | "DeiTForImageClassificationWithTeacher";

/** Backbone names outside the encoder layers: [HF name after the prefix, timm name]. */
const EMBEDDINGS: readonly [string, string][] = [
  ["embeddings.cls_token", "cls_token"],
  ["embeddings.distillation_token", "dist_token"],
  ["embeddings.position_embeddings", "pos_embed"],
  ["embeddings.patch_embeddings.projection.weight", "patch_embed.proj.weight"],
  ["embeddings.patch_embeddings.projection.bias", "patch_embed.proj.bias"],
  ["layernorm.weight", "norm.weight"],
  ["layernorm.bias", "norm.bias"],
];

/** Inside `encoder.layer.{i}.` / `blocks.{i}.`, for both `.weight` and `.bias`. */
const LAYER: readonly [string, string][] = [
  ["layernorm_before", "norm1"],
  ["attention.output.dense", "attn.proj"],
  ["layernorm_after", "norm2"],
  ["intermediate.dense", "mlp.fc1"],
  ["output.dense", "mlp.fc2"],
];
const QKV = ["query", "key", "value"] as const;

/** Classifier heads (never under the prefix): [HF module, timm module]. */
const HEADS: readonly [string, string][] = [
  ["classifier", "head"],
  ["cls_classifier", "head"],
  ["distillation_classifier", "head_dist"],
];

const HF_BACKBONE = /^(vit\.|deit\.)?(?:embeddings|encoder)\./;
const HF_LAYER = /^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$/;
const TIMM_BLOCK = /^blocks\.(\d+)\.(.+)\.(weight|bias)$/;

/** Tells timm names from HF names; anything else (another architecture) is a DataError. */
export function detectNaming(keys: Iterable<string>, source: string): DetectedNaming {
  const all = [...keys];
  const prefixes = new Set<string>();
  for (const k of all) {
    const m = HF_BACKBONE.exec(k);
    if (m) prefixes.add(m[1] ?? "");
  }
  if (prefixes.size > 1) {
    throw new DataError(
      `${source}: Hugging Face keys with different prefixes (${[...prefixes].map((p) => `"${p}"`).join(", ")}); expected one model`,
    );
  }
  if (prefixes.size === 1) return { naming: "hf", prefix: [...prefixes][0] };
  const keySet = new Set(all);
  if (
    keySet.has("patch_embed.proj.weight") &&
    (keySet.has("pos_embed") || all.some((k) => TIMM_BLOCK.test(k)))
  ) {
    return { naming: "timm", prefix: "" };
  }
  const sample = all.slice(0, 4).join(", ") + (all.length > 4 ? ", ..." : "");
  throw new DataError(
    `${source}: not a ViT/DeiT state dict: neither timm names (patch_embed.proj.weight, pos_embed, blocks.N.*) ` +
      `nor Hugging Face names (vit.embeddings.*, deit.embeddings.*, embeddings.*); its keys: ${sample || "(none)"}`,
  );
}

/**
 * Returns the state dict with timm names, converting HF names when detected. Keys that have no
 * timm counterpart pass through unchanged so the model's loader reports them as unexpected, except
 * HF's `pooler.*` (ViTModel / DeiTModel always carry one; timm's ViT has no pooler), which is
 * dropped with a note.
 */
export function toTimmNames(
  sd: ReadonlyMap<string, TensorData>,
  source: string,
): { stateDict: StateDict; naming: DetectedNaming; notes: string[] } {
  const naming = detectNaming(sd.keys(), source);
  if (naming.naming === "timm") return { stateDict: new Map(sd), naming, notes: [] };
  return { ...hfToTimm(sd, naming.prefix, source), naming };
}

function hfToTimm(
  sd: ReadonlyMap<string, TensorData>,
  prefix: string,
  source: string,
): { stateDict: StateDict; notes: string[] } {
  const out: StateDict = new Map();
  const notes: string[] = [];
  // blocks.{i}.attn.qkv.{kind} -> HF name of each of its q, k, v parts -> tensor
  const qkv = new Map<string, Map<string, TensorData>>();
  const embeddings = new Map(EMBEDDINGS);
  const heads = new Map(HEADS);
  for (const [key, t] of sd) {
    const rest = prefix && key.startsWith(prefix) ? key.slice(prefix.length) : key;
    const layer = HF_LAYER.exec(rest);
    const [headModule, param] = splitParam(rest);
    if (embeddings.has(rest)) {
      out.set(embeddings.get(rest)!, t);
    } else if (layer) {
      const [, i, module, kind] = layer;
      const mapped = LAYER.find(([hf]) => hf === module);
      if (QKV.some((p) => module === `attention.attention.${p}`)) {
        const target = `blocks.${i}.attn.qkv.${kind}`;
        qkv.set(target, (qkv.get(target) ?? new Map()).set(key, t));
      } else if (mapped) {
        out.set(`blocks.${i}.${mapped[1]}.${kind}`, t);
      } else {
        out.set(key, t);
      }
    } else if (rest.startsWith("pooler.")) {
      notes.push(`dropped ${key}: the Hugging Face pooler has no counterpart in timm's VisionTransformer`);
    } else if (key === rest && heads.has(headModule)) {
      out.set(`${heads.get(headModule)}.${param}`, t);
    } else {
      out.set(key, t);
    }
  }
  for (const [target, parts] of qkv) {
    const [, i, , kind] = TIMM_BLOCK.exec(target)!;
    const names = QKV.map((p) => `${prefix}encoder.layer.${i}.attention.attention.${p}.${kind}`);
    const missing = names.filter((n) => !parts.has(n));
    if (missing.length > 0)
      throw new DataError(`${source}: ${missing.join(", ")} missing (needed for ${target})`);
    out.set(
      target,
      concatRows(
        names.map((n) => [n, parts.get(n)!]),
        source,
      ),
    );
  }
  return { stateDict: out, notes };
}

/**
 * timm names -> HF names, choosing the HF class that holds exactly this model: DeiT*WithTeacher
 * for a distilled model with heads, ViTForImageClassification with one head, ViTModel / DeiTModel
 * without. A timm key HF ViT cannot express (fc_norm, pre_logits, no class token) is a DataError.
 */
export function timmToHf(
  sd: ReadonlyMap<string, TensorData>,
  source: string,
): { stateDict: StateDict; architecture: HfArchitecture } {
  const distilled = sd.has("dist_token");
  const hasHead = sd.has("head.weight");
  const architecture: HfArchitecture = distilled
    ? hasHead
      ? "DeiTForImageClassificationWithTeacher"
      : "DeiTModel"
    : hasHead
      ? "ViTForImageClassification"
      : "ViTModel";
  if (!sd.has("cls_token")) {
    throw new DataError(
      `${source}: cannot use Hugging Face names: ${architecture} always has a class token (cls_token)`,
    );
  }
  const prefix = architecture.endsWith("Model") ? "" : distilled ? "deit." : "vit.";
  const headNames: Record<string, string> =
    architecture === "DeiTForImageClassificationWithTeacher"
      ? { head: "cls_classifier", head_dist: "distillation_classifier" }
      : { head: "classifier" };
  const embeddings = new Map(EMBEDDINGS.map(([hf, timm]) => [timm, hf]));
  const out: StateDict = new Map();
  for (const [key, t] of sd) {
    const block = TIMM_BLOCK.exec(key);
    const [module, param] = splitParam(key);
    if (embeddings.has(key)) {
      out.set(prefix + embeddings.get(key)!, t);
    } else if (block && block[2] === "attn.qkv") {
      const [, i, , kind] = block;
      splitRows(t, 3, `${source}: ${key}`).forEach((part, j) => {
        out.set(`${prefix}encoder.layer.${i}.attention.attention.${QKV[j]}.${kind}`, part);
      });
    } else if (block && LAYER.some(([, timm]) => timm === block[2])) {
      const [, i, timmModule, kind] = block;
      const hf = LAYER.find(([, timm]) => timm === timmModule)![0];
      out.set(`${prefix}encoder.layer.${i}.${hf}.${kind}`, t);
    } else if (module in headNames) {
      out.set(`${headNames[module]}.${param}`, t);
    } else {
      throw new DataError(
        `${source}: cannot use Hugging Face names: "${key}" has no counterpart in ${architecture}`,
      );
    }
  }
  return { stateDict: out, architecture };
}

/** The parts of a Hugging Face `config.json` this framework uses. */
export interface HfConfigInfo {
  /** Architecture keys found in the file (embed_dim, depth, ..., num_classes when it has a head). */
  model: Partial<ModelConfig>;
  /** id2label in index order; null when absent or only transformers' LABEL_i placeholders. */
  classNames: string[] | null;
  architecture: string | null;
  /** HF's LayerNorm eps (ViTConfig defaults to 1e-12); this framework always uses timm's 1e-6. */
  layerNormEps: number | null;
}

const size = z.union([
  z.number().int().positive(),
  z.tuple([z.number().int().positive(), z.number().int().positive()]),
]);
const HfConfigSchema = z.looseObject({
  model_type: z.string().optional(),
  architectures: z.array(z.string()).optional(),
  hidden_size: z.number().int().positive().optional(),
  num_hidden_layers: z.number().int().positive().optional(),
  num_attention_heads: z.number().int().positive().optional(),
  intermediate_size: z.number().int().positive().optional(),
  hidden_act: z.string().optional(),
  image_size: size.optional(),
  patch_size: size.optional(),
  num_channels: z.union([z.literal(1), z.literal(3)]).optional(),
  qkv_bias: z.boolean().optional(),
  layer_norm_eps: z.number().positive().optional(),
  id2label: z.record(z.string().regex(/^\d+$/, "expected integer keys"), z.string()).optional(),
});

/** Reads a Hugging Face ViT / DeiT `config.json`. */
export function readHfConfig(file: string): HfConfigInfo {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new DataError(`cannot read ${file}: ${(err as Error).message}`);
  }
  return parseHfConfig(raw, file);
}

export function parseHfConfig(raw: unknown, source: string): HfConfigInfo {
  const parsed = HfConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DataError(`${source}: ${issue.path.map(String).join(".") || "(root)"}: ${issue.message}`);
  }
  const c = parsed.data;
  if (c.model_type && c.model_type !== "vit" && c.model_type !== "deit") {
    throw new DataError(`${source}: model_type "${c.model_type}" is not a ViT or DeiT model`);
  }
  if (c.hidden_act && c.hidden_act !== "gelu") {
    throw new DataError(`${source}: hidden_act "${c.hidden_act}" is not supported (only exact "gelu")`);
  }
  const model: Partial<ModelConfig> = {};
  const square = (key: "image_size" | "patch_size", v: number | [number, number]): number => {
    if (typeof v === "number") return v;
    if (v[0] !== v[1])
      throw new DataError(`${source}: ${key} [${v}] is not square; only square sizes are supported`);
    return v[0];
  };
  if (c.image_size !== undefined) model.img_size = square("image_size", c.image_size);
  if (c.patch_size !== undefined) model.patch_size = square("patch_size", c.patch_size);
  if (c.num_channels !== undefined) model.in_chans = c.num_channels;
  if (c.hidden_size !== undefined) model.embed_dim = c.hidden_size;
  if (c.num_hidden_layers !== undefined) model.depth = c.num_hidden_layers;
  if (c.num_attention_heads !== undefined) model.num_heads = c.num_attention_heads;
  if (c.intermediate_size !== undefined && c.hidden_size !== undefined) {
    model.mlp_ratio = c.intermediate_size / c.hidden_size;
  }
  if (c.qkv_bias !== undefined) model.qkv_bias = c.qkv_bias;
  // HF's DeiTModel always has the distillation token, whatever head sits on top.
  if (c.model_type === "deit") model.distilled = true;
  const architecture = c.architectures?.[0] ?? null;
  const labels = Object.entries(c.id2label ?? {})
    .map(([i, name]) => [Number(i), name] as const)
    .sort((a, b) => a[0] - b[0]);
  labels.forEach(([i], pos) => {
    if (i !== pos) throw new DataError(`${source}: id2label has no entry for index ${pos}`);
  });
  if (architecture?.includes("ForImageClassification") && labels.length > 0)
    model.num_classes = labels.length;
  const placeholders = labels.every(([i, name]) => name === `LABEL_${i}`);
  return {
    model,
    classNames: labels.length > 0 && !placeholders ? labels.map(([, name]) => name) : null,
    architecture,
    layerNormEps: c.layer_norm_eps ?? null,
  };
}

/** A `config.json` that transformers' from_pretrained reads for weights written by timmToHf. */
export function toHfConfig(
  model: Pick<
    ModelConfig,
    "img_size" | "patch_size" | "in_chans" | "embed_dim" | "depth" | "num_heads" | "mlp_ratio" | "qkv_bias"
  >,
  architecture: HfArchitecture,
  classNames: readonly string[],
): Record<string, unknown> {
  const id2label = Object.fromEntries(classNames.map((name, i) => [String(i), name]));
  return {
    architectures: [architecture],
    model_type: architecture.startsWith("DeiT") ? "deit" : "vit",
    hidden_size: model.embed_dim,
    num_hidden_layers: model.depth,
    num_attention_heads: model.num_heads,
    intermediate_size: Math.round(model.embed_dim * model.mlp_ratio),
    hidden_act: "gelu",
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    layer_norm_eps: LAYER_NORM_EPS,
    image_size: model.img_size,
    patch_size: model.patch_size,
    num_channels: model.in_chans,
    qkv_bias: model.qkv_bias,
    id2label,
    label2id: Object.fromEntries(classNames.map((name, i) => [name, i])),
  };
}

/** "head.weight" -> ["head", "weight"]. */
function splitParam(key: string): [string, string] {
  const dot = key.lastIndexOf(".");
  return [key.slice(0, dot), key.slice(dot + 1)];
}

/** Stacks tensors of equal shape along dim 0 (HF q, k, v -> timm qkv). */
function concatRows(parts: [string, TensorData][], source: string): TensorData {
  const [firstName, first] = parts[0];
  for (const [name, t] of parts) {
    if (t.shape.join() !== first.shape.join()) {
      throw new DataError(`${source}: ${name} has shape [${t.shape}] but ${firstName} has [${first.shape}]`);
    }
  }
  const data = new Float32Array(first.data.length * parts.length);
  parts.forEach(([, t], i) => {
    data.set(t.data, i * first.data.length);
  });
  return { shape: [first.shape[0] * parts.length, ...first.shape.slice(1)], data };
}

/** Splits dim 0 into `n` equal parts (timm qkv -> HF q, k, v). */
function splitRows(t: TensorData, n: number, where: string): TensorData[] {
  if (t.shape.length === 0 || t.shape[0] % n !== 0) {
    throw new DataError(`${where}: shape [${t.shape}] does not split into ${n} equal parts along dim 0`);
  }
  const len = t.data.length / n;
  const shape = [t.shape[0] / n, ...t.shape.slice(1)];
  return Array.from({ length: n }, (_, i) => ({ shape, data: t.data.slice(i * len, (i + 1) * len) }));
}
