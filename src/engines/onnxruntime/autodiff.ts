/**
 * Reverse-mode differentiation over a Graph (./graph.ts): the backward pass of the training step,
 * written as more ONNX nodes in the same graph. One gradient rule per op type; each gets the
 * node and the gradient of its outputs and adds the nodes that compute its inputs' gradients.
 * test/ort_grad.test.ts checks every rule against finite differences.
 */
import { type Graph, MS_DOMAIN, type Node } from "./graph.js";

/** dL/d(output) per output ("" where none reaches it); returns dL/d(input) per input (null: none needed). */
type GradRule = (g: Graph, node: Node, dy: string[], need: boolean[]) => (string | null)[];

/**
 * The gradients of the scalar `loss` with respect to `wrt` (graph inputs), as graph values.
 * A value in `wrt` that the loss does not depend on gets no entry (torch leaves its .grad None).
 */
export function gradients(g: Graph, loss: string, wrt: readonly string[]): Map<string, string> {
  // Values that depend on `wrt`: only their producers need a backward rule.
  const depends = new Set(wrt);
  for (const node of g.nodes) {
    if (node.inputs.some((i) => depends.has(i))) for (const o of node.outputs) depends.add(o);
  }
  const parts = new Map<string, string[]>([[loss, [g.floatScalar(1)]]]);
  const total = (v: string): string => {
    const p = parts.get(v);
    if (!p) return "";
    if (p.length > 1) parts.set(v, [g.op("Sum", p, `grad.${v}`)]);
    return parts.get(v)![0];
  };
  const forward = [...g.nodes]; // the rules append to g.nodes
  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i];
    const need = node.inputs.map((x) => depends.has(x));
    if (!need.some(Boolean)) continue;
    const dy = node.outputs.map(total);
    if (dy.every((d) => d === "")) continue;
    const rule = RULES[node.op];
    if (!rule) throw new Error(`autodiff: no gradient rule for ${node.op}`);
    rule(g, node, dy, need).forEach((dx, j) => {
      if (!need[j] || dx === null) return;
      const x = node.inputs[j];
      parts.set(x, [...(parts.get(x) ?? []), dx]);
    });
  }
  const out = new Map<string, string>();
  for (const w of wrt) {
    const d = total(w);
    if (d !== "") out.set(w, d);
  }
  return out;
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** dy summed over the axes `shape` was broadcast along: the gradient of a broadcast input. */
function sumTo(g: Graph, dy: string, shape: readonly number[]): string {
  const ds = g.shape(dy);
  if (sameShape(ds, shape)) return dy;
  const lead = ds.length - shape.length;
  const axes = ds.flatMap((d, i) => (i < lead || (shape[i - lead] === 1 && d !== 1) ? [i] : []));
  const summed = g.op("ReduceSum", [dy, g.int64s(axes)], `${dy}.sum`, { keepdims: { int: 1 } });
  return g.op("Reshape", [summed, g.int64s([...shape])], `${dy}.sum_to`);
}

/** dy [..., kept dims as 1] broadcast back over `shape` (the input of a reduction). */
function expandTo(g: Graph, dy: string, keptShape: number[], shape: number[]): string {
  const r = g.op("Reshape", [dy, g.int64s(keptShape)], `${dy}.kept`);
  return g.op("Expand", [r, g.int64s(shape)], `${dy}.expand`);
}

/** The reduced axes of a Reduce* node, normalized. */
function reducedAxes(g: Graph, node: Node): number[] {
  const rank = g.shape(node.inputs[0]).length;
  const a =
    node.op === "ReduceSum" ? g.value(node.inputs[1]).known! : (node.attrs.axes as { ints: number[] }).ints;
  return a.map((x) => (x < 0 ? x + rank : x));
}

function keptShape(shape: number[], axes: number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

const intAttr = (node: Node, k: string) => (node.attrs[k] as { int: number } | undefined)?.int ?? 0;

/**
 * Y = alpha op(A) op(B) (+ C): the products behind MatMul, FusedMatMul and Gemm. The input
 * gradients are products again, with the transposes taken by the product's flags:
 *   dA = alpha dY op(B)^T   (transA: alpha op(B) dY^T)
 *   dB = alpha op(A)^T dY   (transB: alpha dY^T op(A))
 */
function productRule(op: "Gemm" | "FusedMatMul"): GradRule {
  return (g, node, [dy], need) => {
    const [a, b] = node.inputs;
    const [ta, tb] = [intAttr(node, "transA"), intAttr(node, "transB")];
    const alpha = (node.attrs.alpha as { float: number } | undefined)?.float ?? 1;
    const domain = op === "FusedMatMul" ? MS_DOMAIN : "";
    const attrs = (transA: number, transB: number) => ({
      transA: { int: transA },
      transB: { int: transB },
      ...(alpha !== 1 && { alpha: { float: alpha } }),
    });
    const name = node.outputs[0];
    const dA = !need[0]
      ? null
      : ta
        ? g.op(op, [b, dy], `grad.${name}.a`, attrs(tb, 1), domain)
        : g.op(op, [dy, b], `grad.${name}.a`, attrs(0, 1 - tb), domain);
    const dB = !need[1]
      ? null
      : tb
        ? g.op(op, [dy, a], `grad.${name}.b`, attrs(1, ta), domain)
        : g.op(op, [a, dy], `grad.${name}.b`, attrs(1 - ta, 0), domain);
    // Batched products ([B, H, T, T] x [B, H, T, hd]) whose operands have the same batch dims need no sum.
    const fit = (d: string | null, x: string) => (d === null ? null : sumTo(g, d, g.shape(x)));
    const out = [fit(dA, a), fit(dB, b)];
    if (node.inputs.length > 2) out.push(need[2] ? sumTo(g, dy, g.shape(node.inputs[2])) : null);
    return out;
  };
}

const RULES: Record<string, GradRule> = {
  Identity: (_g, _n, [dy]) => [dy],

  Neg: (g, node, [dy]) => [g.op("Neg", [dy], `grad.${node.outputs[0]}`)],

  Add: (g, node, [dy], need) => node.inputs.map((x, i) => (need[i] ? sumTo(g, dy, g.shape(x)) : null)),

  Sub: (g, node, [dy], need) => {
    const [a, b] = node.inputs;
    return [
      need[0] ? sumTo(g, dy, g.shape(a)) : null,
      need[1] ? sumTo(g, g.op("Neg", [dy], `grad.${node.outputs[0]}.neg`), g.shape(b)) : null,
    ];
  },

  Sum: (g, node, [dy], need) => node.inputs.map((x, i) => (need[i] ? sumTo(g, dy, g.shape(x)) : null)),

  // d(ab) = b da + a db
  Mul: (g, node, [dy], need) => {
    const [a, b] = node.inputs;
    const n = node.outputs[0];
    return [
      need[0] ? sumTo(g, g.op("Mul", [dy, b], `grad.${n}.a`), g.shape(a)) : null,
      need[1] ? sumTo(g, g.op("Mul", [dy, a], `grad.${n}.b`), g.shape(b)) : null,
    ];
  },

  // d(a/b) = da / b - (a/b) db / b
  Div: (g, node, [dy], need) => {
    const [a, b] = node.inputs;
    const n = node.outputs[0];
    const da = g.op("Div", [dy, b], `grad.${n}.a`);
    return [
      need[0] ? sumTo(g, da, g.shape(a)) : null,
      need[1]
        ? sumTo(g, g.op("Neg", [g.op("Mul", [da, n], `grad.${n}.by`)], `grad.${n}.b`), g.shape(b))
        : null,
    ];
  },

  // d exp(x) = exp(x) dx
  Exp: (g, node, [dy]) => [g.op("Mul", [dy, node.outputs[0]], `grad.${node.outputs[0]}`)],

  // d tanh(x) = (1 - y^2) dx
  Tanh: (g, node, [dy]) => {
    const y = node.outputs[0];
    const dyy2 = g.op("Mul", [dy, g.op("Mul", [y, y], `grad.${y}.y2`)], `grad.${y}.dyy2`);
    return [g.op("Sub", [dy, dyy2], `grad.${y}`)];
  },

  // gelu'(x) = 0.5 + 0.5 erf(x / sqrt 2) + x phi(x), phi the standard normal density, in 9 full-size
  // ops (the widest activation of the step): phi(x) = exp(ln(1 / sqrt(2 pi)) - (x / sqrt 2)^2) folds
  // the density's constant into the exponent.
  Gelu: (g, node, [dy]) => {
    const [x] = node.inputs;
    const n = node.outputs[0];
    const xs = g.op("Mul", [x, g.floatScalar(Math.SQRT1_2)], `grad.${n}.xs`);
    const erf = g.op("Erf", [xs], `grad.${n}.erf`);
    const exponent = g.op(
      "Sub",
      [g.floatScalar(-0.5 * Math.log(2 * Math.PI)), g.op("Mul", [xs, xs], `grad.${n}.xs2`)],
      `grad.${n}.exponent`,
    );
    const xpdf = g.op("Mul", [x, g.op("Exp", [exponent], `grad.${n}.pdf`)], `grad.${n}.xpdf`);
    const halfErf = g.op("Mul", [erf, g.floatScalar(0.5)], `grad.${n}.half_erf`);
    const d = g.op("Sum", [halfErf, xpdf, g.floatScalar(0.5)], `grad.${n}.d`);
    return [g.op("Mul", [dy, d], `grad.${n}`)];
  },

  // dx = y (dy - sum(dy y)) over the softmax axis (the last one here)
  Softmax: (g, node, [dy]) => {
    const y = node.outputs[0];
    const dyy = g.op("Mul", [dy, y], `grad.${y}.dyy`);
    const s = g.op("ReduceSum", [dyy, g.int64s([-1])], `grad.${y}.sum`, { keepdims: { int: 1 } });
    return [g.op("Sub", [dyy, g.op("Mul", [y, s], `grad.${y}.ys`)], `grad.${y}`)];
  },

  // dx = dy - softmax(x) sum(dy), softmax(x) = exp(y)
  LogSoftmax: (g, node, [dy]) => {
    const y = node.outputs[0];
    const s = g.op("ReduceSum", [dy, g.int64s([-1])], `grad.${y}.sum`, { keepdims: { int: 1 } });
    const p = g.op("Exp", [y], `grad.${y}.p`);
    return [g.op("Sub", [dy, g.op("Mul", [p, s], `grad.${y}.ps`)], `grad.${y}`)];
  },

  /**
   * y = xhat gamma + beta, xhat = (x - mean) inv_std over the last axis (the node's Mean and
   * InvStdDev outputs): dx = inv_std (g - mean(g) - xhat mean(g xhat)) with g = dy gamma;
   * dgamma = sum(dy xhat), dbeta = sum(dy) over the leading axes.
   */
  LayerNormalization: (g, node, [dy], need) => {
    const [x, gamma] = node.inputs;
    const [y, mean, invStd] = node.outputs;
    if (!mean || !invStd)
      throw new Error(`autodiff: ${y} was built without its statistics (training: false)`);
    const lead = g
      .shape(x)
      .slice(0, -1)
      .map((_, i) => i);
    const xhat = g.op("Mul", [g.op("Sub", [x, mean], `grad.${y}.xc`), invStd], `grad.${y}.xhat`);
    const gx = g.op("Mul", [dy, gamma], `grad.${y}.g`);
    const rowMean = (v: string, what: string) =>
      g.op("ReduceMean", [v], `grad.${y}.${what}`, { axes: { ints: [-1] }, keepdims: { int: 1 } });
    const m1 = rowMean(gx, "mean_g");
    const m2 = rowMean(g.op("Mul", [gx, xhat], `grad.${y}.gxhat`), "mean_gxhat");
    const inner = g.op(
      "Sub",
      [g.op("Sub", [gx, m1], `grad.${y}.gc`), g.op("Mul", [xhat, m2], `grad.${y}.xm2`)],
      `grad.${y}.inner`,
    );
    const dx = need[0] ? g.op("Mul", [inner, invStd], `grad.${y}.x`) : null;
    const colSum = (v: string, what: string) =>
      g.op("ReduceSum", [v, g.int64s(lead)], `grad.${y}.${what}`, { keepdims: { int: 0 } });
    const dGamma = need[1] ? colSum(g.op("Mul", [dy, xhat], `grad.${y}.dyxhat`), "gamma") : null;
    const dBeta = need[2] ? colSum(dy, "beta") : null;
    return [dx, dGamma, dBeta];
  },

  Gemm: productRule("Gemm"),
  FusedMatMul: productRule("FusedMatMul"),
  MatMul: productRule("FusedMatMul"),

  Reshape: (g, node, [dy]) => [
    g.op("Reshape", [dy, g.int64s(g.shape(node.inputs[0]))], `grad.${node.outputs[0]}`),
    null,
  ],

  Transpose: (g, node, [dy]) => {
    const perm = (node.attrs.perm as { ints: number[] }).ints;
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [g.op("Transpose", [dy], `grad.${node.outputs[0]}`, { perm: { ints: inverse } })];
  },

  // the pieces' gradients side by side again
  Split: (g, node, dy) => {
    if (dy.some((d) => d === ""))
      throw new Error(`autodiff: ${node.outputs[0]}: a Split output has no gradient`);
    return [g.op("Concat", dy, `grad.${node.outputs[0]}`, node.attrs), null];
  },

  // dy cut where the inputs were joined
  Concat: (g, node, [dy]) => {
    const axis = (node.attrs.axis as { int: number }).int;
    const sizes = node.inputs.map((x) => g.shape(x).at(axis)!);
    return g.opN(
      "Split",
      [dy, g.int64s(sizes)],
      node.inputs.map((x) => `grad.${x}.part`),
      { axis: { int: axis } },
    );
  },

  Expand: (g, node, [dy]) => [sumTo(g, dy, g.shape(node.inputs[0])), null],

  // zeros where the slice was cut off
  Slice: (g, node, [dy]) => {
    const [x, starts, ends, axes] = node.inputs.map((v) => g.value(v));
    const shape = x.shape;
    const pads = new Array(2 * shape.length).fill(0);
    axes.known!.forEach((a, i) => {
      const ax = a < 0 ? a + shape.length : a;
      pads[ax] = starts.known![i];
      pads[ax + shape.length] = shape[ax] - Math.min(ends.known![i], shape[ax]);
    });
    return [g.op("Pad", [dy, g.int64s(pads)], `grad.${node.outputs[0]}`), null, null, null];
  },

  ReduceSum: (g, node, [dy]) => {
    const shape = g.shape(node.inputs[0]);
    return [expandTo(g, dy, keptShape(shape, reducedAxes(g, node)), shape), null];
  },

  ReduceMean: (g, node, [dy]) => {
    const shape = g.shape(node.inputs[0]);
    const axes = reducedAxes(g, node);
    const n = axes.reduce((p, a) => p * shape[a], 1);
    const scaled = g.op("Mul", [dy, g.floatScalar(1 / n)], `grad.${node.outputs[0]}.mean`);
    return [expandTo(g, scaled, keptShape(shape, axes), shape)];
  },
};

/** The op types that have a gradient rule (the finite-difference test walks them all). */
export const DIFFERENTIABLE_OPS = Object.keys(RULES);
