/**
 * A small ONNX graph IR: nodes, constants, inputs and outputs, with every value's shape inferred as
 * the graph is built (the gradient rules in ./autodiff.ts need them), encoded to an ONNX ModelProto
 * (field numbers are onnx.proto's, onnx/onnx, onnx/onnx.proto).
 *
 * Shapes are concrete: a graph is built for a nominal batch size. A graph that runs at any batch
 * (the export) declares its batch dimension symbolic and writes its Reshape targets with 0 / -1,
 * which ONNX resolves at run time; int64 values computed from shapes (Shape -> Concat) are folded
 * here too, so Expand and Reshape know their output shapes.
 */
import * as os from "node:os";
import { DataError } from "../../errors.js";
import { ProtoWriter } from "../../io/protobuf.js";

const ONNX_OPSET = 17;
const MS_OPSET = 1;
export const MS_DOMAIN = "com.microsoft";
const IR_VERSION = 8;
/** protobuf messages are limited to 2 GiB; larger models need ONNX external data. */
const MAX_MODEL_BYTES = 2 ** 31 - 1;

/** TensorProto.DataType */
const DTYPES = { float: 1, int64: 7 } as const;
export type DType = keyof typeof DTYPES;
/** AttributeProto.AttributeType */
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

export type Attr = { float: number } | { int: number } | { ints: number[] };

export interface Node {
  op: string;
  /** "" (ONNX) or com.microsoft (onnxruntime's contrib ops). */
  domain: string;
  /** "" marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
}

export interface Value {
  shape: number[];
  dtype: DType;
  /** The elements of a small int64 value known while building (constants, shapes). */
  known?: number[];
}

/** A graph input or output as declared; a string dimension is symbolic ("batch"). */
interface Declared {
  name: string;
  dims: (number | string)[];
  dtype: DType;
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** numpy broadcasting of two shapes. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`graph: shapes [${a}] and [${b}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

const axisOf = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

export class Graph {
  readonly nodes: Node[] = [];
  private readonly values = new Map<string, Value>();
  private readonly initializers = new Map<string, ProtoWriter>();
  private readonly inputs: Declared[] = [];
  private readonly outputs: Declared[] = [];
  private usesMsDomain = false;

  constructor(private readonly name = "vit") {}

  has(value: string): boolean {
    return this.values.has(value);
  }

  value(name: string): Value {
    const v = this.values.get(name);
    if (!v) throw new Error(`graph: no value "${name}"`);
    return v;
  }

  shape(name: string): number[] {
    return this.value(name).shape;
  }

  /** A graph input; `dims` declares it (symbolic batch), `shape` is the nominal one shapes are inferred from. */
  input(name: string, shape: number[], opts: { dims?: (number | string)[]; dtype?: DType } = {}): string {
    const dtype = opts.dtype ?? "float";
    this.define(name, { shape, dtype });
    this.inputs.push({ name, dims: opts.dims ?? shape, dtype });
    return name;
  }

  /** Marks `value` as a graph output under `name` (an Identity when the names differ). */
  output(value: string, name = value, dims?: (number | string)[]): string {
    const out = name === value ? value : this.op("Identity", [value], name);
    const v = this.value(out);
    this.outputs.push({ name: out, dims: dims ?? v.shape, dtype: v.dtype });
    return out;
  }

  /** A float32 initializer (weights); `data` is linked, not copied, until `encode`. */
  constant(name: string, shape: number[], data: Float32Array): string {
    if (data.length !== numel(shape))
      throw new Error(`graph: ${name} has ${data.length} values for [${shape}]`);
    this.initializer(name, shape, "float", data);
    return name;
  }

  floatScalar(value: number): string {
    const name = `const_f32_${value}`;
    if (!this.values.has(name)) this.initializer(name, [], "float", Float32Array.of(value));
    return name;
  }

  /** An int64 constant, 1-D by default (shape operands, axes, indices). */
  int64s(values: number[], dims: number[] = [values.length]): string {
    const name = `const_i64_${dims.length}d_${values.join("_")}`;
    if (!this.values.has(name)) {
      this.initializer(name, dims, "int64", BigInt64Array.from(values, BigInt));
      this.value(name).known = values;
    }
    return name;
  }

  /** A node with one output, named `name` (made unique); returns the output's name. */
  op(op: string, inputs: string[], name: string, attrs: Record<string, Attr> = {}, domain = ""): string {
    return this.opN(op, inputs, [name], attrs, domain)[0];
  }

  /** A node with several outputs. */
  opN(
    op: string,
    inputs: string[],
    names: string[],
    attrs: Record<string, Attr> = {},
    domain = "",
  ): string[] {
    const outputs = names.map((n) => this.fresh(n));
    const node: Node = { op, domain, inputs, outputs, attrs };
    const inferred = infer(this, node);
    for (const [i, o] of outputs.entries()) this.define(o, inferred[i]);
    if (domain === MS_DOMAIN) this.usesMsDomain = true;
    this.nodes.push(node);
    return outputs;
  }

  /** The serialized ModelProto. */
  encode(metadata: Record<string, string> = {}, source = "onnx export"): Uint8Array {
    if (os.endianness() !== "LE")
      throw new DataError("ONNX export needs a little-endian host (raw_data is LE)");
    // GraphProto: node 1, name 2, initializer 5, input 11, output 12
    const graph = new ProtoWriter();
    for (const node of this.nodes) graph.message(1, encodeNode(node));
    graph.string(2, this.name);
    for (const init of this.initializers.values()) graph.message(5, init);
    for (const i of this.inputs) graph.message(11, valueInfo(i));
    for (const o of this.outputs) graph.message(12, valueInfo(o));
    // ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8 {domain 1, version 2},
    // metadata_props 14 {key 1, value 2}
    const model = new ProtoWriter()
      .int(1, IR_VERSION)
      .string(2, "vit")
      .message(7, graph)
      .message(8, new ProtoWriter().string(1, "").int(2, ONNX_OPSET));
    if (this.usesMsDomain) model.message(8, new ProtoWriter().string(1, MS_DOMAIN).int(2, MS_OPSET));
    for (const [key, value] of Object.entries(metadata)) {
      model.message(14, new ProtoWriter().string(1, key).string(2, value));
    }
    if (model.length > MAX_MODEL_BYTES) {
      throw new DataError(
        `${source}: the model is ${model.length} bytes, over protobuf's 2 GiB limit for one ONNX file`,
      );
    }
    return model.finish();
  }

  private initializer(name: string, shape: number[], dtype: DType, data: Float32Array | BigInt64Array): void {
    this.define(name, { shape, dtype });
    // TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian)
    this.initializers.set(
      name,
      new ProtoWriter()
        .ints(1, shape)
        .int(2, DTYPES[dtype])
        .string(8, name)
        .bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)),
    );
  }

  private define(name: string, v: Value): void {
    // Every value is produced once; a clash is a bug in the graph, not a user error.
    if (this.values.has(name)) throw new Error(`graph: value "${name}" is defined twice`);
    this.values.set(name, v);
  }

  /** `name`, or `name_2`, `name_3`... when taken (a gradient rule may run twice for one node name). */
  private fresh(name: string): string {
    if (!this.values.has(name)) return name;
    for (let i = 2; ; i++) if (!this.values.has(`${name}_${i}`)) return `${name}_${i}`;
  }
}

/** Output shapes (and folded int64 values) of `node`, for the op types this engine writes. */
function infer(g: Graph, node: Node): Value[] {
  const ins = node.inputs.map((n) => (n === "" ? null : g.value(n)));
  const x = ins[0]!;
  const attr = (k: string) => node.attrs[k] as { int: number } & { ints: number[] } & { float: number };
  const float = (shape: number[]): Value[] => [{ shape, dtype: "float" }];
  switch (node.op) {
    case "Identity":
    case "Neg":
    case "Sqrt":
    case "Exp":
    case "Erf":
    case "Tanh":
    case "Softmax":
    case "LogSoftmax":
    case "Gelu":
    case "Cast":
      return [{ shape: x.shape, dtype: node.op === "Cast" ? "float" : x.dtype }];
    case "Add":
    case "Sub":
    case "Mul":
    case "Div":
    case "Min":
    case "Max":
    case "Sum":
      return float(ins.map((v) => v!.shape).reduce(broadcastShapes));
    case "MatMul":
    case "FusedMatMul": {
      let [a, b] = [ins[0]!.shape, ins[1]!.shape];
      const swap = (s: number[]) => [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]];
      if (node.attrs.transA && attr("transA").int) a = swap(a);
      if (node.attrs.transB && attr("transB").int) b = swap(b);
      if (a[a.length - 1] !== b[b.length - 2]) throw new Error(`graph: ${node.op} [${a}] x [${b}]`);
      const batch = broadcastShapes(a.slice(0, -2), b.slice(0, -2));
      return float([...batch, a[a.length - 2], b[b.length - 1]]);
    }
    case "Gemm": {
      const [a, b] = [ins[0]!.shape, ins[1]!.shape];
      const m = node.attrs.transA && attr("transA").int ? a[1] : a[0];
      const k = node.attrs.transA && attr("transA").int ? a[0] : a[1];
      const [kb, n] = node.attrs.transB && attr("transB").int ? [b[1], b[0]] : [b[0], b[1]];
      if (k !== kb) throw new Error(`graph: Gemm inner dimensions ${k} and ${kb}`);
      return float([m, n]);
    }
    case "Transpose":
      return float(attr("perm").ints.map((p) => x.shape[p]));
    case "Reshape": {
      const target = ins[1]!.known;
      if (!target) throw new Error("graph: Reshape needs a shape known while building");
      const out = target.map((d, i) => (d === 0 ? x.shape[i] : d));
      const rest = numel(out.filter((d) => d !== -1));
      return float(out.map((d) => (d === -1 ? numel(x.shape) / rest : d)));
    }
    case "Expand": {
      const target = ins[1]!.known;
      if (!target) throw new Error("graph: Expand needs a shape known while building");
      return float(broadcastShapes(x.shape, target));
    }
    case "Shape": {
      const end = node.attrs.end ? attr("end").int : x.shape.length;
      const known = x.shape.slice(0, end);
      return [{ shape: [known.length], dtype: "int64", known }];
    }
    case "Concat": {
      const axis = axisOf(attr("axis").int, x.shape.length);
      const shape = [...x.shape];
      shape[axis] = ins.reduce((n, v) => n + v!.shape[axis], 0);
      const known = ins.every((v) => v!.known) ? ins.flatMap((v) => v!.known!) : undefined;
      return [{ shape, dtype: x.dtype, known }];
    }
    case "Split": {
      const axis = axisOf(attr("axis").int, x.shape.length);
      return ins[1]!.known!.map((size) => ({
        shape: x.shape.map((d, i) => (i === axis ? size : d)),
        dtype: x.dtype,
      }));
    }
    case "Slice": {
      const [starts, ends, axes] = [ins[1]!.known!, ins[2]!.known!, ins[3]!.known!];
      const shape = [...x.shape];
      axes.forEach((a, i) => {
        const ax = axisOf(a, shape.length);
        shape[ax] = Math.min(ends[i], shape[ax]) - starts[i];
      });
      return float(shape);
    }
    case "Pad": {
      const pads = ins[1]!.known!;
      const r = x.shape.length;
      return float(x.shape.map((d, i) => d + pads[i] + pads[i + r]));
    }
    case "ReduceSum":
    case "ReduceMean":
    case "ReduceSumSquare":
    case "ReduceMax":
    case "ArgMax": {
      const axes = (node.op === "ReduceSum" ? ins[1]?.known : node.attrs.axes && attr("axes").ints) ?? [
        node.op === "ArgMax" ? attr("axis").int : null,
      ];
      const all = axes[0] === null || axes.length === 0;
      const reduced = new Set(all ? x.shape.keys() : axes.map((a) => axisOf(a!, x.shape.length)));
      const keep = node.attrs.keepdims ? attr("keepdims").int !== 0 : true;
      const shape = x.shape.flatMap((d, i) => (reduced.has(i) ? (keep ? [1] : []) : [d]));
      return [{ shape, dtype: node.op === "ArgMax" ? "int64" : "float" }];
    }
    case "OneHot":
      return [{ shape: [...x.shape, ins[1]!.known![0]], dtype: ins[2]!.dtype }];
    case "LayerNormalization": {
      const axis = axisOf(attr("axis").int, x.shape.length);
      const stats = x.shape.map((d, i) => (i < axis ? d : 1));
      return [x.shape, stats, stats]
        .slice(0, node.outputs.length)
        .map((shape) => ({ shape, dtype: "float" }));
    }
    case "Conv": {
      const [w, k, s] = [ins[1]!.shape, attr("kernel_shape").ints, attr("strides").ints];
      return float([x.shape[0], w[0], ...k.map((kk, i) => Math.floor((x.shape[2 + i] - kk) / s[i]) + 1)]);
    }
    default:
      throw new Error(`graph: no shape rule for ${node.op}`);
  }
}

/** NodeProto: input 1, output 2, name 3, op_type 4, attribute 5 {name 1, type 20, f 2, i 3, ints 8}, domain 7. */
function encodeNode(node: Node): ProtoWriter {
  const w = new ProtoWriter();
  for (const input of node.inputs) w.string(1, input);
  for (const output of node.outputs) w.string(2, output);
  w.string(3, node.outputs[0]).string(4, node.op);
  for (const [name, attr] of Object.entries(node.attrs)) {
    const a = new ProtoWriter().string(1, name);
    if ("float" in attr) a.int(20, ATTR_FLOAT).float(2, attr.float);
    else if ("int" in attr) a.int(20, ATTR_INT).int(3, attr.int);
    else a.int(20, ATTR_INTS).ints(8, attr.ints);
    w.message(5, a);
  }
  if (node.domain) w.string(7, node.domain);
  return w;
}

/**
 * ValueInfoProto {name 1, type 2}: TypeProto.tensor_type 1 {elem_type 1, shape 2 {dim 1
 * {dim_value 1 | dim_param 2}}}; a string dimension is symbolic.
 */
function valueInfo(d: Declared): ProtoWriter {
  const shape = new ProtoWriter();
  for (const dim of d.dims) {
    shape.message(
      1,
      typeof dim === "string" ? new ProtoWriter().string(2, dim) : new ProtoWriter().int(1, dim),
    );
  }
  const tensorType = new ProtoWriter().int(1, DTYPES[d.dtype]).message(2, shape);
  return new ProtoWriter().string(1, d.name).message(2, new ProtoWriter().message(1, tensorType));
}
