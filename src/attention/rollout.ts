/**
 * Attention maps of a ViT for one image, from the attention probabilities of every block
 * (softmax(q k^T * scale), each `[heads, T, T]`, tokens ordered [cls, dist, patches]).
 *
 * - Attention rollout (Abnar & Zuidema 2020): per layer fuse the heads by their mean, add the
 *   identity for the residual connection and re-normalise the rows, then multiply the layers
 *   together, first layer rightmost: R = A_L ... A_2 A_1. Row 0 of R says how much each input
 *   token flows into the class token at the output.
 * - The last layer's class-token attention per head: row 0 of A_L[h] over the patches, raw.
 */

/** One block's attention probabilities for one image: row-major `[heads, tokens, tokens]`. */
export interface LayerAttention {
  heads: number;
  tokens: number;
  data: Float32Array;
}

function check(a: LayerAttention, i: number): void {
  if (a.data.length !== a.heads * a.tokens * a.tokens) {
    throw new Error(
      `attention of layer ${i}: ${a.data.length} values for ${a.heads} heads x ${a.tokens} x ${a.tokens} tokens`,
    );
  }
}

/** Mean over heads: `[T, T]`. */
export function headMean(a: LayerAttention): Float64Array {
  const tt = a.tokens * a.tokens;
  const out = new Float64Array(tt);
  for (let h = 0; h < a.heads; h++) for (let i = 0; i < tt; i++) out[i] += a.data[h * tt + i];
  for (let i = 0; i < tt; i++) out[i] /= a.heads;
  return out;
}

/** `m + I` with each row scaled to sum 1 (a row of attention probabilities becomes (A + I) / 2). */
export function addResidual(m: Float64Array, tokens: number): Float64Array {
  const out = Float64Array.from(m);
  for (let r = 0; r < tokens; r++) {
    out[r * tokens + r] += 1;
    let sum = 0;
    for (let c = 0; c < tokens; c++) sum += out[r * tokens + c];
    for (let c = 0; c < tokens; c++) out[r * tokens + c] /= sum;
  }
  return out;
}

/** `a @ b` for square `[n, n]` row-major matrices. */
export function matMul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      if (aik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += aik * b[k * n + j];
    }
  }
  return out;
}

/** The rollout matrix `[T, T]` over the given layers (first block first). */
export function attentionRollout(layers: LayerAttention[]): Float64Array {
  if (layers.length === 0) throw new Error("attentionRollout: no layers");
  const t = layers[0].tokens;
  let result: Float64Array | null = null;
  layers.forEach((a, i) => {
    check(a, i);
    if (a.tokens !== t) throw new Error(`attention of layer ${i} has ${a.tokens} tokens, layer 0 has ${t}`);
    const fused = addResidual(headMean(a), t);
    result = result === null ? fused : matMul(fused, result, t);
  });
  return result!;
}

/**
 * The relevance of each patch token `[T - numPrefix]`: row `row` of a `[T, T]` matrix over the
 * patch columns. For a model pooled by averaging (`global_pool: avg`), pass `row: "mean"`: its
 * output is the mean of the patch tokens' rows (timm skips the prefix tokens), so the
 * relevance is the mean of those rows.
 */
export function patchRelevance(
  m: Float64Array,
  tokens: number,
  numPrefix: number,
  row: number | "mean" = 0,
): Float64Array {
  const patches = tokens - numPrefix;
  const out = new Float64Array(patches);
  const rows = row === "mean" ? Array.from({ length: patches }, (_, p) => numPrefix + p) : [row];
  for (const r of rows) for (let p = 0; p < patches; p++) out[p] += m[r * tokens + numPrefix + p];
  for (let p = 0; p < patches; p++) out[p] /= rows.length;
  return out;
}

/**
 * Each head's own map of one layer: `patchRelevance` of its `[T, T]` slice (row 0 is the class
 * token's attention over the patches, raw).
 */
export function headRelevance(
  a: LayerAttention,
  numPrefix: number,
  row: number | "mean" = 0,
): Float64Array[] {
  check(a, 0);
  const tt = a.tokens * a.tokens;
  return Array.from({ length: a.heads }, (_, h) =>
    patchRelevance(Float64Array.from(a.data.subarray(h * tt, (h + 1) * tt)), a.tokens, numPrefix, row),
  );
}

/** `v` scaled to [0, 1] by its own min and max (a constant map becomes all zeros). */
export function minMaxScale(v: ArrayLike<number>): Float64Array {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < v.length; i++) {
    lo = Math.min(lo, v[i]);
    hi = Math.max(hi, v[i]);
  }
  const out = new Float64Array(v.length);
  if (hi > lo) for (let i = 0; i < v.length; i++) out[i] = (v[i] - lo) / (hi - lo);
  return out;
}
