// Per-op costs on the wasm backend, to choose the model's layouts: `tsx bench/ops.ts [--threads N]`.
// One JSON line per case on stdout: best and median wall time over a short loop, GFLOP/s for products,
// and `sha` (a SHA-1 prefix of the first run's outputs) so two runs, e.g. --threads 1 and 2, can be
// compared for bit-identical results. wasm kernels run synchronously, so timing the call times the kernel.
//
// XNNPACK packs a product's right operand the first time it sees that tensor and caches the packing by
// tensor id. In training every operand is new at every step (weights too: each update gives them a new
// id), so cases marked `fresh` feed each repetition its own copies of the operands.
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs";
import { initWasm } from "../src/engines/tfjs/wasm_threads.js";

const { values: args } = parseArgs({
  options: {
    threads: { type: "string", default: "1" },
    // A case stops repeating once it has used `budget` ms or run `reps` times (a first, untimed-for-
    // the-minimum warm-up run is always made; a case slower than the budget reports that run alone).
    budget: { type: "string", default: "400" },
    reps: { type: "string", default: "5" },
    // A regular expression: only cases whose name matches run.
    only: { type: "string" },
  },
});
const only = args.only === undefined ? undefined : new RegExp(args.only);
const budgetMs = Number(args.budget);
const maxReps = Number(args.reps);

const threads = await initWasm({ threads: Number(args.threads) });
const base = { bench: "ops", backend: tf.getBackend(), threads };

type Out = tf.Tensor | tf.Tensor[];
type Case = (rep: number) => Out;

const list = (out: Out) => (Array.isArray(out) ? out : [out]);

function sha(out: Out): string {
  const hash = createHash("sha1");
  for (const t of list(out)) hash.update(t.dataSync() as Float32Array);
  return hash.digest("hex").slice(0, 12);
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

interface CaseInfo {
  flops?: number;
  elems?: number;
  /** Outputs to compare the first run's outputs with (reported as `max_rel_diff`). */
  reference?: tf.Tensor[];
  /** Return the first run's outputs (the caller disposes them) instead of disposing them. */
  keep?: boolean;
}

function run(name: string, shape: string, fn: Case, cost: CaseInfo = {}): tf.Tensor[] | undefined {
  if (only && !only.test(name)) return undefined;
  let t0 = performance.now();
  let out = tf.tidy(() => fn(0));
  const warmMs = performance.now() - t0;
  const first = list(out);
  const digest = sha(first);
  const times: number[] = [];
  for (let spent = warmMs; times.length < maxReps && spent < budgetMs; spent += times[times.length - 1]) {
    t0 = performance.now();
    out = tf.tidy(() => fn(times.length + 1));
    times.push(performance.now() - t0);
    tf.dispose(list(out));
  }
  const warmOnly = times.length === 0;
  if (warmOnly) times.push(warmMs);
  times.sort((a, b) => a - b);
  const ms = times[0];
  const line: Record<string, unknown> = {
    ...base,
    case: name,
    shape,
    ms: round(ms),
    median_ms: round(times[Math.floor(times.length / 2)]),
    reps: warmOnly ? 0 : times.length,
  };
  if (cost.flops) line.gflops = round(cost.flops / ms / 1e6);
  if (cost.elems) line.melem_per_s = round(cost.elems / ms / 1e3);
  if (cost.reference) {
    // Largest difference relative to the largest magnitude of the same tensor, over all outputs.
    const ref = cost.reference;
    const rel = first.map((t, i) =>
      tf.tidy(() => tf.div(tf.max(tf.abs(tf.sub(t, ref[i]))), tf.max(tf.abs(ref[i]))).dataSync()[0]),
    );
    line.max_rel_diff = Number(Math.max(...rel).toPrecision(3));
  }
  line.sha = digest;
  console.log(JSON.stringify(line));
  if (cost.keep) return first;
  tf.dispose(first);
  return undefined;
}

let seed = 1;
const rand = (shape: number[]) => tf.randomNormal(shape, 0, 1, "float32", seed++);
// reps + 1 distinct copies (one per run), made outside the timed region.
const fresh = (t: tf.Tensor) => Array.from({ length: maxReps + 1 }, (_, i) => tf.add(t, i * 1e-3));

// Batched product as one 2-D XNNPACK product per batch item. The view slices of src/engines/tfjs/wasm_kernels.ts make
// the unstacking cheap; the stock Slice copies the whole input out of the heap for every item.
const perItem = (a: tf.Tensor, b: tf.Tensor) => {
  const bs = tf.unstack(b);
  return tf.stack(tf.unstack(a).map((ai, i) => tf.matMul(ai as tf.Tensor2D, bs[i] as tf.Tensor2D)));
};
const t3 = (x: tf.Tensor) => tf.transpose(x, [0, 2, 1]);

// 1. The backend's GEMM and its transposed variants. tfjs-backend-wasm sends only
//    !transposeA && !transposeB && batch == 1 to XNNPACK; everything else runs a scalar blocked loop.
{
  const n = 1024;
  const [a, b] = [rand([n, n]), rand([n, n])];
  const bs = fresh(b);
  const flops = 2 * n ** 3;
  run("matmul", "1024x1024x1024", () => tf.matMul(a, b), { flops });
  run("matmul_fresh", "1024x1024x1024", (r) => tf.matMul(a, bs[r]), { flops });
  run("matmul_transposeB", "1024x1024x1024", () => tf.matMul(a, b, false, true), { flops });
  run("matmul_transposeA", "1024x1024x1024", () => tf.matMul(a, b, true, false), { flops });
  tf.dispose([a, b, ...bs]);
}

// 2. ViT Linear layers at vit_tiny_patch16_224, batch 32 (M = 32 * 197 tokens), weight in PyTorch's
//    [out, in] layout, all operands fresh. "autograd" is tfjs's gradient of matMul(x, w, false, true),
//    whose backward uses transposeA / transposeB products; "explicit" writes every product without
//    transpose flags: y = x @ transpose(w), dx = dy @ w, dw = transpose(dy) @ x.
{
  const m = 32 * 197;
  const layers: [string, number, number][] = [
    ["qkv", 192, 576],
    ["proj", 192, 192],
    ["fc1", 192, 768],
    ["fc2", 768, 192],
  ];
  for (const [layer, k, n] of layers) {
    const shape = `${m}x${k}->${n}`;
    const [x0, w0, dy0, bias] = [rand([m, k]), rand([n, k]), rand([m, n]), rand([n])];
    const [x, w, dy] = [fresh(x0), fresh(w0), fresh(dy0)];
    const wt = w.map((wi) => tf.transpose(wi));
    const ones = tf.ones([1, m]);
    const flops = 2 * m * k * n;
    const name = (what: string) => `linear_${layer}_${what}`;
    run(name("fwd_transposeB"), shape, (r) => tf.matMul(x[r], w[r], false, true), { flops });
    run(name("fwd_pretransposed"), shape, (r) => tf.matMul(x[r], wt[r]), { flops });
    run(name("fwd_transpose_w_then_matmul"), shape, (r) => tf.matMul(x[r], tf.transpose(w[r])), { flops });
    run(name("fwd_matmul_add_bias"), shape, (r) => tf.add(tf.matMul(x[r], wt[r]), bias), { flops });
    run(name("fwd_fused_bias"), shape, (r) => tf.fused.matMul({ a: x[r], b: wt[r], bias }), { flops });
    run(name("dx_dy_w"), shape, (r) => tf.matMul(dy[r], w[r]), { flops });
    run(name("dw_transposeA"), shape, (r) => tf.matMul(dy[r], x[r], true, false), { flops });
    run(name("dw_transpose_dy_then_matmul"), shape, (r) => tf.matMul(tf.transpose(dy[r]), x[r]), { flops });
    run(name("transpose_dy"), `${m}x${n}`, (r) => tf.transpose(dy[r]), { elems: m * n });
    run(name("bias_grad_sum"), `${m}x${n}`, (r) => tf.sum(dy[r], 0), { elems: m * n });
    run(name("bias_grad_ones_matmul"), `${m}x${n}`, (r) => tf.matMul(ones, dy[r]), { elems: m * n });
    if (layer === "qkv") {
      const grads = tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.matMul(xx, ww, false, true));
      run(
        name("fwd_bwd_autograd"),
        shape,
        (r) => [tf.matMul(x[r], w[r], false, true), ...grads([x[r], w[r]], dy[r])],
        {
          flops: 3 * flops,
        },
      );
    }
    run(
      name("fwd_bwd_explicit"),
      shape,
      (r) => [
        tf.matMul(x[r], tf.transpose(w[r])),
        tf.matMul(dy[r], w[r]),
        tf.matMul(tf.transpose(dy[r]), x[r]),
      ],
      { flops: 3 * flops },
    );
    tf.dispose([x0, w0, dy0, bias, ones, ...x, ...w, ...wt, ...dy]);
  }
}

// 3. Attention products [B*heads, T, hd] x [B*heads, hd, T] and [B*heads, T, T] x [B*heads, T, hd]:
//    one batched matMul (the scalar loop on wasm) vs one 2-D XNNPACK product per (batch, head).
{
  const cases: [number, number, number][] = [
    [128 * 3, 65, 32],
    [32 * 3, 197, 64],
  ];
  for (const [bh, t, hd] of cases) {
    const shape = `${bh}x${t}x${hd}`;
    const [q, k, v, p] = [rand([bh, t, hd]), rand([bh, t, hd]), rand([bh, t, hd]), rand([bh, t, t])];
    const kt = t3(k);
    const flops = 2 * bh * t * t * hd;
    run("attn_qk_batched", shape, () => tf.matMul(q, kt), { flops });
    run("attn_qk_batched_transposeB", shape, () => tf.matMul(q, k, false, true), { flops });
    run("attn_qk_per_item", shape, () => perItem(q, kt), { flops });
    run("attn_av_batched", shape, () => tf.matMul(p, v), { flops });
    run("attn_av_per_item", shape, () => perItem(p, v), { flops });
    // S = Q K^T forward + backward (dQ = dS K, dK^T = Q^T dS): tfjs's gradient of the batched product
    // vs the same three products per item with explicit 3-D transposes.
    const qkGrads = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b));
    run("attn_qk_fwd_bwd_batched_autograd", shape, () => [tf.matMul(q, kt), ...qkGrads([q, kt], p)], {
      flops: 3 * flops,
    });
    run(
      "attn_qk_fwd_bwd_per_item_explicit",
      shape,
      () => [perItem(q, kt), perItem(p, k), perItem(t3(q), p)],
      {
        flops: 3 * flops,
      },
    );
    run("attn_transpose_3d", shape, () => t3(k), { elems: bh * t * hd });
    run("attn_softmax", `${bh}x${t}x${t}`, () => tf.softmax(p), { elems: bh * t * t });
    const softmaxGrad = tf.grad((z: tf.Tensor) => tf.softmax(z));
    run("attn_softmax_fwd_bwd", `${bh}x${t}x${t}`, () => softmaxGrad(p, p), { elems: bh * t * t });
    tf.dispose([q, k, v, p, kt]);
  }
  // qkv output [B, T, 3 * D] -> q, k, v as [B * heads, T, hd] (vit_tiny, batch 32): one 5-D transpose
  // vs a 4-D transpose and three slices.
  const [b, t, h, hd] = [32, 197, 3, 64];
  const qkv = rand([b, t, 3 * h * hd]);
  const elems = qkv.size;
  run(
    "attn_split_heads_5d_transpose",
    "32x197x576",
    () => tf.transpose(tf.reshape(qkv, [b, t, 3, h, hd]), [2, 0, 3, 1, 4]),
    {
      elems,
    },
  );
  run(
    "attn_split_heads_4d_transpose_slices",
    "32x197x576",
    () => {
      const heads = tf.reshape(tf.transpose(tf.reshape(qkv, [b, t, 3 * h, hd]), [0, 2, 1, 3]), [
        b,
        3,
        h * t * hd,
      ]);
      return tf.split(heads, 3, 1).map((part) => tf.reshape(part, [b * h, t, hd]));
    },
    { elems },
  );
  run(
    "attn_merge_heads_4d_transpose",
    "32x3x197x64",
    () => tf.transpose(tf.reshape(qkv.slice([0, 0, 0], [b, t, h * hd]), [b, h, t, hd]), [0, 2, 1, 3]),
    {
      elems: elems / 3,
    },
  );
  qkv.dispose();
}

// 4. Element-wise and normalisation costs at the MLP hidden size [B * T, 4 * D] and the block width.
{
  const x = rand([32 * 197, 768]);
  const y = rand([32 * 197, 768]);
  const elems = x.size;
  const shape = "6304x768";
  const gelu = (z: tf.Tensor) => tf.mul(tf.mul(z, 0.5), tf.add(1, tf.erf(tf.mul(z, Math.SQRT1_2))));
  const geluGrad = tf.grad(gelu);
  run("erf", shape, () => tf.erf(x), { elems });
  run("tanh", shape, () => tf.tanh(x), { elems });
  run("exp", shape, () => tf.exp(x), { elems });
  run("add", shape, () => tf.add(x, y), { elems });
  run("mul", shape, () => tf.mul(x, y), { elems });
  run("mul_scalar", shape, () => tf.mul(x, 0.5), { elems });
  run("gelu_erf", shape, () => gelu(x), { elems });
  run("gelu_erf_fwd_bwd", shape, () => geluGrad(x, y), { elems });
  tf.dispose([x, y]);

  const h = rand([32 * 197, 192]);
  const [gamma, beta] = [rand([192]), rand([192])];
  // timm LayerNorm: eps 1e-6, biased variance over the last axis.
  const layerNorm = (z: tf.Tensor, g: tf.Tensor, bb: tf.Tensor) => {
    const { mean, variance } = tf.moments(z, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(z, mean), tf.rsqrt(tf.add(variance, 1e-6))), g), bb);
  };
  const lnGrads = tf.grads(layerNorm);
  run("layernorm", "6304x192", () => layerNorm(h, gamma, beta), { elems: h.size });
  run("layernorm_fwd_bwd", "6304x192", () => [layerNorm(h, gamma, beta), ...lnGrads([h, gamma, beta], h)], {
    elems: h.size,
  });
  tf.dispose([h, gamma, beta]);
}

// 5. One pre-norm ViT block, forward + backward for the input and every parameter, written two ways:
//    "stock" as the obvious tfjs code (Linear = matMul(x, w, false, true), batched attention products with
//    tfjs's gradients), "explicit" with the backward passes written out so that every product is a 2-D
//    product without transpose flags (see `linear` and `bmm` below).
type GradFn = (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[];
const withGrad = (forward: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, backward: GradFn) =>
  tf.customGrad((a, b, save) => {
    (save as tf.GradSaveFunc)([a as tf.Tensor, b as tf.Tensor]);
    return { value: forward(a as tf.Tensor, b as tf.Tensor), gradFunc: backward };
  });
// x [M, in] @ w^T for a PyTorch-layout w [out, in]: dx = dy @ w, dw = dy^T @ x.
const linear = withGrad(
  (x, w) => tf.matMul(x, tf.transpose(w)),
  (dy, [x, w]) => [tf.matMul(dy, w), tf.matMul(tf.transpose(dy), x)],
);
// a [N, m, k] @ b [N, k, n] per item: da = dy @ b^T, db = a^T @ dy.
const bmm = withGrad(perItem, (dy, [a, b]) => [perItem(dy, t3(b)), perItem(t3(a), dy)]);

{
  const configs: [string, number, number, number, number][] = [
    ["vit_tiny_b8", 8, 197, 192, 3],
    ["vit_32px_b32", 32, 65, 192, 3],
  ];
  for (const [label, b, t, d, h] of configs) {
    const hd = d / h;
    const m = b * t;
    const params = {
      ln1g: rand([d]),
      ln1b: rand([d]),
      qkvW: tf.mul(rand([3 * d, d]), 0.05),
      qkvB: rand([3 * d]),
      projW: tf.mul(rand([d, d]), 0.05),
      projB: rand([d]),
      ln2g: rand([d]),
      ln2b: rand([d]),
      fc1W: tf.mul(rand([4 * d, d]), 0.05),
      fc1B: rand([4 * d]),
      fc2W: tf.mul(rand([d, 4 * d]), 0.05),
      fc2B: rand([d]),
    };
    const names = Object.keys(params) as (keyof typeof params)[];
    const x = rand([m, d]);
    const dy = rand([m, d]);
    const layerNorm = (z: tf.Tensor, g: tf.Tensor, bb: tf.Tensor) => {
      const { mean, variance } = tf.moments(z, -1, true);
      return tf.add(tf.mul(tf.mul(tf.sub(z, mean), tf.rsqrt(tf.add(variance, 1e-6))), g), bb);
    };
    const gelu = (z: tf.Tensor) => tf.mul(tf.mul(z, 0.5), tf.add(1, tf.erf(tf.mul(z, Math.SQRT1_2))));
    const block =
      (explicit: boolean) =>
      (...xs: tf.Tensor[]) => {
        const [input, ...ps] = xs;
        const p = Object.fromEntries(names.map((n, i) => [n, ps[i]])) as typeof params;
        const lin = (z: tf.Tensor, w: tf.Tensor, bias: tf.Tensor) =>
          tf.add(explicit ? linear(z, w) : tf.matMul(z, w, false, true), bias);
        // [M, 3D] -> [B, 3 * heads, T, hd] -> q, k, v [B * heads, T, hd]
        const qkv = tf.transpose(
          tf.reshape(lin(layerNorm(input, p.ln1g, p.ln1b), p.qkvW, p.qkvB), [b, t, 3 * h, hd]),
          [0, 2, 1, 3],
        );
        const [q, k, v] = tf.split(qkv, 3, 1).map((z) => tf.reshape(z, [b * h, t, hd]));
        const qs = tf.mul(q, hd ** -0.5);
        const probs = tf.softmax(explicit ? bmm(qs, t3(k)) : tf.matMul(qs, k, false, true));
        const heads = explicit ? bmm(probs, v) : tf.matMul(probs, v);
        const merged = tf.reshape(tf.transpose(tf.reshape(heads, [b, h, t, hd]), [0, 2, 1, 3]), [m, d]);
        const x1 = tf.add(input, lin(merged, p.projW, p.projB));
        const hidden = gelu(lin(layerNorm(x1, p.ln2g, p.ln2b), p.fc1W, p.fc1B));
        return tf.add(x1, lin(hidden, p.fc2W, p.fc2B));
      };
    const inputs = [x, ...names.map((n) => params[n])];
    // Forward matMul FLOPs of the block (4 Linears + 2 attention products); training = 3x.
    const flops = 2 * m * 12 * d * d + 2 * 2 * b * h * t * t * hd;
    const shape = `${b}x${t}x${d}`;
    const [stock, explicit] = [block(false), block(true)];
    const [stockGrads, explicitGrads] = [tf.grads(stock), tf.grads(explicit)];
    const y = run(`block_${label}_fwd_stock`, shape, () => stock(...inputs), { flops, keep: true });
    const g = run(`block_${label}_fwd_bwd_stock`, shape, () => stockGrads(inputs, dy), {
      flops: 3 * flops,
      keep: true,
    });
    run(`block_${label}_fwd_explicit`, shape, () => explicit(...inputs), { flops, reference: y });
    run(`block_${label}_fwd_bwd_explicit`, shape, () => explicitGrads(inputs, dy), {
      flops: 3 * flops,
      reference: g,
    });
    tf.dispose([...(y ?? []), ...(g ?? [])]);
    tf.dispose([x, dy, ...Object.values(params)]);
  }
}
