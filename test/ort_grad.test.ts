/**
 * Every gradient rule of src/engines/onnxruntime/autodiff.ts against central finite differences:
 * a one-node graph, the loss sum(y * R) for a fixed random R, its gradients from the rule, and
 * (L(x + e) - L(x - e)) / 2e per input element, all run by onnxruntime.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { DIFFERENTIABLE_OPS, gradients } from "../src/engines/onnxruntime/autodiff.js";
import { type Attr, Graph, MS_DOMAIN } from "../src/engines/onnxruntime/graph.js";

interface Case {
  op: string;
  /** Differentiable float inputs by shape (values in [-1, 1), or [lo, hi) when given). */
  inputs: { shape: number[]; range?: [number, number] }[];
  /** Constant int64 inputs after the float ones (shapes, axes, slice bounds). */
  ints?: number[][];
  attrs?: Record<string, Attr>;
  domain?: string;
  /** Output count (the loss reads the first `scored`). */
  outputs?: number;
  scored?: number;
}

const CASES: Record<string, Case> = {
  Identity: { op: "Identity", inputs: [{ shape: [2, 3] }] },
  Neg: { op: "Neg", inputs: [{ shape: [2, 3] }] },
  Add: { op: "Add", inputs: [{ shape: [2, 3] }, { shape: [3] }] },
  Sub: { op: "Sub", inputs: [{ shape: [2, 3] }, { shape: [2, 1] }] },
  Sum: { op: "Sum", inputs: [{ shape: [2, 3] }, { shape: [1, 3] }, { shape: [2, 3] }] },
  Mul: { op: "Mul", inputs: [{ shape: [2, 3] }, { shape: [1, 3] }] },
  Div: { op: "Div", inputs: [{ shape: [2, 3] }, { shape: [3], range: [1, 2] }] },
  Exp: { op: "Exp", inputs: [{ shape: [2, 3] }] },
  Tanh: { op: "Tanh", inputs: [{ shape: [2, 3] }] },
  Gelu: { op: "Gelu", inputs: [{ shape: [2, 5], range: [-3, 3] }], domain: MS_DOMAIN },
  Softmax: { op: "Softmax", inputs: [{ shape: [2, 4] }], attrs: { axis: { int: -1 } } },
  LogSoftmax: { op: "LogSoftmax", inputs: [{ shape: [2, 4] }], attrs: { axis: { int: -1 } } },
  LayerNormalization: {
    op: "LayerNormalization",
    inputs: [{ shape: [3, 5] }, { shape: [5] }, { shape: [5] }],
    attrs: { axis: { int: -1 }, epsilon: { float: 1e-6 } },
    outputs: 3,
    scored: 1,
  },
  Gemm: {
    op: "Gemm",
    inputs: [{ shape: [3, 4] }, { shape: [5, 4] }, { shape: [5] }],
    attrs: { transB: { int: 1 } },
  },
  FusedMatMul: {
    op: "FusedMatMul",
    inputs: [{ shape: [2, 4, 3] }, { shape: [2, 5, 4] }],
    attrs: { transA: { int: 1 }, transB: { int: 1 }, alpha: { float: 0.5 } },
    domain: MS_DOMAIN,
  },
  MatMul: { op: "MatMul", inputs: [{ shape: [2, 3, 4] }, { shape: [2, 4, 5] }] },
  Reshape: { op: "Reshape", inputs: [{ shape: [2, 6] }], ints: [[3, -1]] },
  Transpose: { op: "Transpose", inputs: [{ shape: [2, 3, 4] }], attrs: { perm: { ints: [1, 2, 0] } } },
  Split: {
    op: "Split",
    inputs: [{ shape: [3, 4] }],
    ints: [[1, 2]],
    attrs: { axis: { int: 0 } },
    outputs: 2,
  },
  Concat: { op: "Concat", inputs: [{ shape: [2, 3] }, { shape: [2, 2] }], attrs: { axis: { int: 1 } } },
  Expand: { op: "Expand", inputs: [{ shape: [1, 3] }], ints: [[2, 1]] },
  Slice: { op: "Slice", inputs: [{ shape: [2, 5, 3] }], ints: [[1], [3], [1]] },
  ReduceSum: {
    op: "ReduceSum",
    inputs: [{ shape: [2, 3, 4] }],
    ints: [[1]],
    attrs: { keepdims: { int: 0 } },
  },
  ReduceMean: {
    op: "ReduceMean",
    inputs: [{ shape: [2, 3, 4] }],
    attrs: { axes: { ints: [1] }, keepdims: { int: 0 } },
  },
};

/** Deterministic values in [0, 1) (a small LCG). */
function uniform(seed: number): () => number {
  let s = seed;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** The case's graph: loss = sum_i sum(y_i * R_i); outputs the loss and d loss / d input. */
function build(c: Case): { bytes: Uint8Array; names: string[] } {
  const g = new Graph("grad_check");
  const names = c.inputs.map((x, i) => g.input(`x${i}`, x.shape));
  const ints = (c.ints ?? []).map((v) => g.int64s(v));
  const outs = g.opN(
    c.op,
    [...names, ...ints],
    Array.from({ length: c.outputs ?? 1 }, (_, i) => `y${i}`),
    c.attrs ?? {},
    c.domain ?? "",
  );
  const rand = uniform(99);
  const terms = outs.slice(0, c.scored ?? outs.length).map((y, i) => {
    const shape = g.shape(y);
    const r = g.constant(
      `r${i}`,
      shape,
      Float32Array.from({ length: numel(shape) }, () => rand() * 2 - 1),
    );
    const axes = g.int64s(shape.map((_, a) => a));
    return g.op("ReduceSum", [g.op("Mul", [y, r], `yr${i}`), axes], `term${i}`, { keepdims: { int: 0 } });
  });
  const loss = terms.length > 1 ? g.op("Sum", terms, "loss_sum") : terms[0];
  g.output(loss, "loss", []);
  for (const [x, d] of gradients(g, loss, names)) g.output(d, `d_${x}`);
  return { bytes: g.encode(), names };
}

describe("each gradient rule agrees with finite differences", () => {
  test("every rule has a case", () => {
    assert.deepEqual(
      DIFFERENTIABLE_OPS.filter((op) => !(op in CASES)),
      [],
    );
  });

  for (const [name, c] of Object.entries(CASES)) {
    test(name, async () => {
      const { bytes, names } = build(c);
      const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
      try {
        const rand = uniform(7);
        const values = c.inputs.map(({ shape, range = [-1, 1] }) =>
          Float32Array.from({ length: numel(shape) }, () => range[0] + (range[1] - range[0]) * rand()),
        );
        const feeds = () =>
          Object.fromEntries(
            names.map((n, i) => [n, new ort.Tensor("float32", values[i], c.inputs[i].shape)]),
          );
        const out = await session.run(feeds());
        const lossAt = async () => ((await session.run(feeds())).loss.data as Float32Array)[0];
        const eps = 1e-2;
        for (const [i, n] of names.entries()) {
          const analytic = out[`d_${n}`].data as Float32Array;
          for (let j = 0; j < values[i].length; j++) {
            const x = values[i][j];
            values[i][j] = x + eps;
            const up = await lossAt();
            values[i][j] = x - eps;
            const down = await lossAt();
            values[i][j] = x;
            const fd = (up - down) / (2 * eps);
            assert.ok(
              Math.abs(analytic[j] - fd) <= 5e-3 * (1 + Math.abs(fd)),
              `${name}: d/d${n}[${j}] rule ${analytic[j]}, finite difference ${fd}`,
            );
          }
        }
      } finally {
        await session.release();
      }
    });
  }
});
