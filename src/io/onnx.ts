/**
 * ONNX export of the eval-mode ViT / DeiT, built straight from a timm state dict and the model
 * config (no tensor is allocated: the model is only declared, for its parameter specs and sizes),
 * computing exactly what timm's forward computes:
 *
 *   pixel_values [batch, C, H, W] (normalized) -> logits [batch, num_classes]
 *
 * opset 17 (the first with LayerNormalization), IR version 8, a symbolic "batch" dimension. The
 * initializers are the state dict itself: timm names, PyTorch layouts, float32 raw_data. Linear
 * weights stay [out, in] behind a Transpose node that runtimes fold at load time, so the file's
 * weights can be read back as a timm checkpoint.
 *
 * Field numbers are onnx.proto's (onnx/onnx, onnx/onnx.proto).
 */
import * as os from "node:os";
import { DataError } from "../errors.js";
import { LAYER_NORM_EPS } from "../model/layers/layer_norm.js";
import { checkTimmStateDict } from "../model/timm_spec.js";
import { VisionTransformer, type VitConfig } from "../model/vision_transformer.js";
import type { TensorData } from "../tensor.js";
import { ProtoWriter } from "./protobuf.js";

const ONNX_OPSET = 17;
const IR_VERSION = 8;
/** protobuf messages are limited to 2 GiB; larger models need ONNX external data. */
const MAX_MODEL_BYTES = 2 ** 31 - 1;

/** TensorProto.DataType */
const FLOAT = 1;
const INT64 = 7;
/** AttributeProto.AttributeType */
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

export interface OnnxExportOptions {
  /** ModelProto.metadata_props, e.g. class names; onnxruntime exposes them as custom metadata. */
  metadata?: Record<string, string>;
  /** Named in error messages (e.g. the checkpoint path). */
  source?: string;
}

type Attr = { float: number } | { int: number } | { ints: number[] };

interface Node {
  op: string;
  inputs: string[];
  output: string;
  attrs: Record<string, Attr>;
}

/** Serialized ONNX ModelProto of `stateDict` (timm names) for the architecture `cfg`. */
export function exportOnnx(
  stateDict: ReadonlyMap<string, TensorData>,
  cfg: VitConfig,
  opts: OnnxExportOptions = {},
): Uint8Array {
  if (os.endianness() !== "LE")
    throw new DataError("ONNX export needs a little-endian host (raw_data is LE)");
  // Declared, not allocated: the parameter specs and sizes the graph must match.
  const vit = new VisionTransformer(cfg);
  checkTimmStateDict(stateDict, vit, opts.source ?? "onnx export");
  const g = new GraphBuilder(stateDict);
  g.output(vitGraph(g, vit), "logits");
  // ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8 {domain 1, version 2},
  // metadata_props 14 {key 1, value 2}
  const model = new ProtoWriter()
    .int(1, IR_VERSION)
    .string(2, "vit")
    .message(7, g.encode(vit))
    .message(8, new ProtoWriter().string(1, "").int(2, ONNX_OPSET));
  for (const [key, value] of Object.entries(opts.metadata ?? {})) {
    model.message(14, new ProtoWriter().string(1, key).string(2, value));
  }
  if (model.length > MAX_MODEL_BYTES) {
    throw new DataError(
      `${opts.source ?? "onnx export"}: the model is ${model.length} bytes, over protobuf's 2 GiB limit for one ONNX file`,
    );
  }
  return model.finish();
}

/** timm's VisionTransformer.forward in eval mode; returns the name of the logits tensor. */
function vitGraph(g: GraphBuilder, vit: VisionTransformer): string {
  const { cfg, numPrefixTokens } = vit;
  const seqLen = numPrefixTokens + vit.gridSize[0] * vit.gridSize[1];
  const D = cfg.embed_dim;
  const headDim = D / cfg.num_heads;
  const p = cfg.patch_size;

  // [B, C, H, W] -> [B, D, gh, gw] -> [B, D, N] -> [B, N, D] (patches row-major: y then x)
  let x = g.op(
    "Conv",
    [INPUT, g.weight("patch_embed.proj.weight"), g.weight("patch_embed.proj.bias")],
    "patch_embed.proj",
    {
      kernel_shape: { ints: [p, p] },
      strides: { ints: [p, p] },
    },
  );
  x = g.op("Reshape", [x, g.int64s([0, D, -1])], "patch_embed.flatten");
  x = g.op("Transpose", [x], "patch_embed", { perm: { ints: [0, 2, 1] } });

  // [cls, dist, patches] + pos_embed; the tokens broadcast to the batch through a [B, 1, 1] shape.
  const prefix = (["cls_token", "dist_token"] as const).filter((k) => g.has(k));
  if (prefix.length > 0) {
    const batch = g.op("Shape", [INPUT], "batch_size", { end: { int: 1 } });
    const tokenShape = g.op("Concat", [batch, g.int64s([1, 1])], "prefix_shape", { axis: { int: 0 } });
    const tokens = prefix.map((k) => g.op("Expand", [g.weight(k), tokenShape], `${k}.expand`));
    x = g.op("Concat", [...tokens, x], "tokens", { axis: { int: 1 } });
  }
  x = g.op("Add", [x, g.weight("pos_embed")], "pos_drop");

  for (let i = 0; i < cfg.depth; i++) x = block(g, x, `blocks.${i}`, cfg.num_heads, headDim, D);

  let features: string[];
  if (cfg.global_pool === "avg") {
    // mean over the patch tokens only, then fc_norm (which replaces the final norm)
    x = g.op("Slice", [x, g.int64s([numPrefixTokens]), g.int64s([seqLen]), g.int64s([1])], "patch_tokens");
    x = g.op("ReduceMean", [x], "pool", { axes: { ints: [1] }, keepdims: { int: 0 } });
    features = [layerNorm(g, x, "fc_norm")];
  } else {
    // the class token, and for DeiT the distillation token after it
    x = layerNorm(g, x, "norm");
    const tokens = cfg.distilled ? [0, 1] : [0];
    features = tokens.map((t) => g.op("Gather", [x, g.int64s([t], [])], `token_${t}`, { axis: { int: 1 } }));
  }
  if (cfg.representation_size !== null) {
    features = features.map((f) => g.op("Tanh", [linear(g, f, "pre_logits.fc")], "pre_logits"));
  }
  if (cfg.num_classes > 0) {
    features = features.map((f, i) => linear(g, f, i === 0 ? "head" : "head_dist"));
  }
  // DeiT in eval: the mean of the class head and the distillation head
  if (features.length === 2) {
    return g.op("Mul", [g.op("Add", features, "heads_sum"), g.floatScalar(0.5)], "heads_mean");
  }
  return features[0];
}

/** x + attn(norm1(x)), then x + mlp(norm2(x)); [B, T, D] -> [B, T, D]. */
function block(g: GraphBuilder, x: string, name: string, heads: number, headDim: number, D: number): string {
  let h = layerNorm(g, x, `${name}.norm1`);
  h = linear(g, h, `${name}.attn.qkv`);
  // [B, T, 3D] -> [B, T, 3, heads, hd] -> [3, B, heads, T, hd]: qkv rows are q | k | v, heads contiguous
  h = g.op("Reshape", [h, g.int64s([0, 0, 3, heads, headDim])], `${name}.attn.qkv.split_heads`);
  h = g.op("Transpose", [h], `${name}.attn.qkv.permute`, { perm: { ints: [2, 0, 3, 1, 4] } });
  const [q, k, v] = ["q", "k", "v"].map((part, i) =>
    g.op("Gather", [h, g.int64s([i], [])], `${name}.attn.${part}`, { axis: { int: 0 } }),
  );
  // as timm: scale q before the product
  const qs = g.op("Mul", [q, g.floatScalar(headDim ** -0.5)], `${name}.attn.q_scaled`);
  const kt = g.op("Transpose", [k], `${name}.attn.k_t`, { perm: { ints: [0, 1, 3, 2] } });
  let a = g.op("MatMul", [qs, kt], `${name}.attn.scores`);
  a = g.op("Softmax", [a], `${name}.attn.attn_drop`, { axis: { int: -1 } });
  // [B, heads, T, hd] -> [B, T, heads, hd] -> [B, T, D]
  a = g.op("MatMul", [a, v], `${name}.attn.context`);
  a = g.op("Transpose", [a], `${name}.attn.context_t`, { perm: { ints: [0, 2, 1, 3] } });
  a = g.op("Reshape", [a, g.int64s([0, 0, D])], `${name}.attn.merge_heads`);
  a = linear(g, a, `${name}.attn.proj`);
  x = g.op("Add", [x, a], `${name}.attn_residual`);

  h = layerNorm(g, x, `${name}.norm2`);
  h = gelu(g, linear(g, h, `${name}.mlp.fc1`), `${name}.mlp.act`);
  h = linear(g, h, `${name}.mlp.fc2`);
  return g.op("Add", [x, h], name);
}

function layerNorm(g: GraphBuilder, x: string, name: string): string {
  return g.op("LayerNormalization", [x, g.weight(`${name}.weight`), g.weight(`${name}.bias`)], name, {
    axis: { int: -1 },
    epsilon: { float: LAYER_NORM_EPS },
  });
}

/** torch Linear: y = x W^T + b, any number of leading dims. */
function linear(g: GraphBuilder, x: string, name: string): string {
  const wt = g.op("Transpose", [g.weight(`${name}.weight`)], `${name}.weight_t`, { perm: { ints: [1, 0] } });
  const y = g.op("MatMul", [x, wt], `${name}.matmul`);
  return g.has(`${name}.bias`) ? g.op("Add", [y, g.weight(`${name}.bias`)], name) : y;
}

/** Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as torch.onnx writes it before opset 20's Gelu. */
function gelu(g: GraphBuilder, x: string, name: string): string {
  const e = g.op("Erf", [g.op("Div", [x, g.floatScalar(Math.SQRT2)], `${name}.div`)], `${name}.erf`);
  const y = g.op("Mul", [x, g.op("Add", [e, g.floatScalar(1)], `${name}.add`)], `${name}.mul`);
  return g.op("Mul", [y, g.floatScalar(0.5)], name);
}

const INPUT = "pixel_values";

/** Collects nodes and initializers; names every value after the timm module that computes it. */
class GraphBuilder {
  private readonly nodes: Node[] = [];
  private readonly initializers = new Map<string, ProtoWriter>();
  private readonly names = new Set<string>([INPUT]);
  private outputName = "";

  constructor(private readonly stateDict: ReadonlyMap<string, TensorData>) {}

  has(key: string): boolean {
    return this.stateDict.has(key);
  }

  /** Adds a node with one output named `name` and returns that name. */
  op(op: string, inputs: string[], name: string, attrs: Record<string, Attr> = {}): string {
    const output = this.claim(name);
    this.nodes.push({ op, inputs, output, attrs });
    return output;
  }

  /** The state-dict tensor `key` as an initializer of the same name. */
  weight(key: string): string {
    if (!this.initializers.has(key)) {
      const t = this.stateDict.get(key)!;
      this.initializer(key, t.shape, FLOAT, t.data);
    }
    return key;
  }

  /** An int64 constant, 1-D by default (shape operands, axes, gather indices). */
  int64s(values: number[], dims: number[] = [values.length]): string {
    const name = `const_i64_${dims.length}d_${values.join("_")}`;
    if (!this.initializers.has(name)) this.initializer(name, dims, INT64, BigInt64Array.from(values, BigInt));
    return name;
  }

  floatScalar(value: number): string {
    const name = `const_f32_${value}`;
    if (!this.initializers.has(name)) this.initializer(name, [], FLOAT, Float32Array.of(value));
    return name;
  }

  output(value: string, name: string): void {
    this.outputName = this.op("Identity", [value], name);
  }

  /** GraphProto: node 1, name 2, initializer 5, input 11, output 12. */
  encode(vit: VisionTransformer): ProtoWriter {
    const { cfg } = vit;
    const graph = new ProtoWriter();
    for (const node of this.nodes) graph.message(1, encodeNode(node));
    graph.string(2, "vit");
    for (const init of this.initializers.values()) graph.message(5, init);
    graph.message(11, valueInfo(INPUT, ["batch", cfg.in_chans, cfg.img_size, cfg.img_size]));
    // num_classes, or the pooled feature width when the model has no head (num_classes 0)
    const width = vit.numClasses > 0 ? vit.numClasses : vit.numFeatures;
    graph.message(12, valueInfo(this.outputName, ["batch", width]));
    return graph;
  }

  private initializer(
    name: string,
    dims: number[],
    dataType: number,
    data: Float32Array | BigInt64Array,
  ): void {
    this.claim(name);
    // TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian)
    this.initializers.set(
      name,
      new ProtoWriter()
        .ints(1, dims)
        .int(2, dataType)
        .string(8, name)
        .bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)),
    );
  }

  private claim(name: string): string {
    // Every value is produced once; a clash is a bug in the graph above, not a user error.
    if (this.names.has(name)) throw new Error(`onnx export: value "${name}" is defined twice`);
    this.names.add(name);
    return name;
  }
}

/** NodeProto: input 1, output 2, name 3, op_type 4, attribute 5 {name 1, type 20, f 2, i 3, ints 8}. */
function encodeNode(node: Node): ProtoWriter {
  const w = new ProtoWriter();
  for (const input of node.inputs) w.string(1, input);
  w.string(2, node.output).string(3, node.output).string(4, node.op);
  for (const [name, attr] of Object.entries(node.attrs)) {
    const a = new ProtoWriter().string(1, name);
    if ("float" in attr) a.int(20, ATTR_FLOAT).float(2, attr.float);
    else if ("int" in attr) a.int(20, ATTR_INT).int(3, attr.int);
    else a.int(20, ATTR_INTS).ints(8, attr.ints);
    w.message(5, a);
  }
  return w;
}

/**
 * ValueInfoProto {name 1, type 2} of a float32 tensor: TypeProto.tensor_type 1 {elem_type 1,
 * shape 2 {dim 1 {dim_value 1 | dim_param 2}}}; a string dimension is symbolic.
 */
function valueInfo(name: string, dims: (number | string)[]): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of dims) {
    shape.message(1, typeof d === "string" ? new ProtoWriter().string(2, d) : new ProtoWriter().int(1, d));
  }
  const tensorType = new ProtoWriter().int(1, FLOAT).message(2, shape);
  return new ProtoWriter().string(1, name).message(2, new ProtoWriter().message(1, tensorType));
}
