/**
 * The eval-mode ViT as an ONNX model: the file `vit export --format onnx` writes, and the model an
 * onnxruntime InferenceSession runs for eval, predict and a distillation teacher.
 *
 * - export (`exportOnnx`): pixel_values [batch, C, H, W] (normalized) -> logits [batch, K], plain
 *   ONNX ops (opset 17) any runtime loads, a symbolic batch, the state dict as initializers (timm
 *   names, PyTorch layouts, float32), a distilled model's two heads averaged as timm's eval does.
 * - inference (`inferenceModel`): the same graph with the loader's layout (images [B, H, W, C]),
 *   onnxruntime's fused ops, and optionally the weights as graph inputs (so one session serves
 *   weights that change, as during training) and both heads of a distilled model as outputs.
 */
import { DataError } from "../../errors.js";
import { checkTimmStateDict } from "../../model/timm_spec.js";
import { VisionTransformer, type VitConfig } from "../../model/vision_transformer.js";
import type { TensorData } from "../../tensor.js";
import { Graph } from "./graph.js";
import { vitForward } from "./vit_graph.js";

export interface OnnxExportOptions {
  /** ModelProto.metadata_props, e.g. class names; onnxruntime exposes them as custom metadata. */
  metadata?: Record<string, string>;
  /** Named in error messages (e.g. the checkpoint path). */
  source?: string;
}

/** Serialized ONNX ModelProto of `stateDict` (timm names) for the architecture `cfg`. */
export function exportOnnx(
  stateDict: ReadonlyMap<string, TensorData>,
  cfg: VitConfig,
  opts: OnnxExportOptions = {},
): Uint8Array {
  // Declared, not allocated: the parameter specs and sizes the graph must match.
  const vit = new VisionTransformer(cfg);
  const source = opts.source ?? "onnx export";
  checkTimmStateDict(stateDict, vit, source);
  const g = new Graph();
  const image = g.input("pixel_values", [1, cfg.in_chans, cfg.img_size, cfg.img_size], {
    dims: ["batch", cfg.in_chans, cfg.img_size, cfg.img_size],
  });
  const { heads } = vitForward(g, vit, {
    image,
    layout: "nchw",
    param: constantParams(g, stateDict),
    training: false,
    fused: false,
  });
  g.output(meanOfHeads(g, heads), "logits", ["batch", outputWidth(vit)]);
  return g.encode(opts.metadata, source);
}

export interface InferenceModelOptions {
  /** Fixed weights (initializers), or null: every parameter is a graph input named as in the state dict. */
  weights: ReadonlyMap<string, TensorData> | null;
  /** "both": a distilled model answers with `logits` and `dist_logits`; "mean": their mean as `logits`. */
  heads: "mean" | "both";
  source?: string;
}

export interface InferenceModel {
  /** The ModelProto for `ort.InferenceSession.create`. */
  bytes: Uint8Array;
  /** "images" [batch, H, W, C] float32, normalized as the loader does. */
  input: string;
  /** "logits" [batch, K] (the pooled features without a head), then "dist_logits" with heads "both". */
  outputs: string[];
  /** With weights null: the parameter inputs' names and shapes, in state-dict order. */
  params: Map<string, number[]>;
}

/** The eval-mode model on the loader's images [batch, H, W, C], for an onnxruntime InferenceSession. */
export function inferenceModel(cfg: VitConfig, opts: InferenceModelOptions): InferenceModel {
  const vit = new VisionTransformer(cfg);
  const source = opts.source ?? "onnxruntime model";
  const shapes = vit.paramShapes();
  const g = new Graph();
  const image = g.input("images", [1, cfg.img_size, cfg.img_size, cfg.in_chans], {
    dims: ["batch", cfg.img_size, cfg.img_size, cfg.in_chans],
  });
  let param: (key: string) => string;
  if (opts.weights) {
    checkTimmStateDict(opts.weights, vit, source);
    param = constantParams(g, opts.weights);
  } else {
    for (const [key, shape] of shapes) g.input(key, shape);
    param = (key) => key;
  }
  const { heads } = vitForward(g, vit, { image, layout: "nhwc", param, training: false, fused: true });
  const width = outputWidth(vit);
  const outputs =
    opts.heads === "both" && heads.length === 2
      ? [g.output(heads[0], "logits", ["batch", width]), g.output(heads[1], "dist_logits", ["batch", width])]
      : [g.output(meanOfHeads(g, heads), "logits", ["batch", width])];
  return { bytes: g.encode({}, source), input: image, outputs, params: opts.weights ? new Map() : shapes };
}

/** Each state-dict tensor as an initializer of the same name, added when the graph first uses it. */
function constantParams(g: Graph, stateDict: ReadonlyMap<string, TensorData>): (key: string) => string {
  return (key) => {
    if (g.has(key)) return key;
    const t = stateDict.get(key);
    if (!t) throw new DataError(`onnx graph: the state dict has no ${key}`);
    return g.constant(key, t.shape, t.data);
  };
}

/** DeiT in eval: the mean of the class head and the distillation head. */
function meanOfHeads(g: Graph, heads: string[]): string {
  if (heads.length === 1) return heads[0];
  return g.op("Mul", [g.op("Add", heads, "heads_sum"), g.floatScalar(0.5)], "heads_mean");
}

/** num_classes, or the pooled feature width when the model has no head (num_classes 0). */
function outputWidth(vit: VisionTransformer): number {
  return vit.numClasses > 0 ? vit.numClasses : vit.numFeatures;
}
