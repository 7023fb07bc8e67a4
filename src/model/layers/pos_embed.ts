/**
 * Position-embedding resampling for loading weights at another image size: timm's
 * `resample_abs_pos_embed(posemb, new_size, old_size, num_prefix_tokens, interpolation="bicubic",
 * antialias=True)`. tfjs has no bicubic resize, so this is a CPU routine on the host array.
 *
 * `F.interpolate(mode="bicubic", antialias=True)` is not plain bicubic even when upsampling: it is
 * Pillow's separable filter (Keys cubic, a = -0.5, support widened by the scale when shrinking,
 * taps outside the image dropped and the rest renormalised). The plain a = -0.75 clamped-edge
 * bicubic moves the fixtures' values by 0.14-0.37.
 */
import { DataError } from "../../errors.js";

export interface PosEmbed {
  /** [1, numPrefixTokens + gh * gw, D] */
  shape: number[];
  data: Float32Array;
}

/**
 * Resamples the grid part of `posEmbed` from `oldGrid` to `newGrid` (both [h, w]); the first
 * `numPrefixTokens` rows (cls, dist tokens) are kept as they are. Computed in float64.
 */
export function resamplePosEmbed(
  posEmbed: PosEmbed,
  newGrid: [number, number],
  oldGrid: [number, number],
  numPrefixTokens: number,
): PosEmbed {
  const [one, tokens, dim] = posEmbed.shape;
  if (posEmbed.shape.length !== 3 || one !== 1) {
    throw new DataError(`pos_embed: expected shape [1, tokens, dim], got [${posEmbed.shape.join(", ")}]`);
  }
  const [oh, ow] = oldGrid;
  const [nh, nw] = newGrid;
  for (const [name, v] of [
    ["old grid", oh],
    ["old grid", ow],
    ["new grid", nh],
    ["new grid", nw],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new DataError(`pos_embed: ${name} size ${v} is not a positive integer`);
  }
  if (tokens !== numPrefixTokens + oh * ow) {
    throw new DataError(
      `pos_embed: ${tokens} tokens do not fit ${numPrefixTokens} prefix tokens + a ${oh}x${ow} grid (${numPrefixTokens + oh * ow})`,
    );
  }
  const prefixLen = numPrefixTokens * dim;
  const out = new Float32Array(prefixLen + nh * nw * dim);
  out.set(posEmbed.data.subarray(0, prefixLen));
  const grid = posEmbed.data.subarray(prefixLen);

  // Along H: [oh, ow, D] -> [nh, ow, D], kept in float64 for the second pass.
  const rows = aaWeights(oh, nh);
  const tmp = new Float64Array(nh * ow * dim);
  const rowLen = ow * dim;
  for (let i = 0; i < nh; i++) {
    const { lo, w } = rows[i];
    const dst = i * rowLen;
    for (let k = 0; k < w.length; k++) {
      const src = (lo + k) * rowLen;
      const wk = w[k];
      for (let e = 0; e < rowLen; e++) tmp[dst + e] += wk * grid[src + e];
    }
  }
  // Along W: [nh, ow, D] -> [nh, nw, D].
  const cols = aaWeights(ow, nw);
  const acc = new Float64Array(dim);
  for (let i = 0; i < nh; i++) {
    for (let j = 0; j < nw; j++) {
      const { lo, w } = cols[j];
      acc.fill(0);
      for (let k = 0; k < w.length; k++) {
        const src = (i * ow + lo + k) * dim;
        const wk = w[k];
        for (let d = 0; d < dim; d++) acc[d] += wk * tmp[src + d];
      }
      out.set(acc, prefixLen + (i * nw + j) * dim);
    }
  }
  return { shape: [1, numPrefixTokens + nh * nw, dim], data: out };
}

/** Keys' cubic convolution kernel with a = -0.5 (Pillow's, used by torch's antialiased bicubic). */
function cubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return ((t - 5) * t + 8) * t * a - 4 * a;
  return 0;
}

/** Per output index: the first input index and the normalised weights of its taps. */
function aaWeights(nIn: number, nOut: number): { lo: number; w: Float64Array }[] {
  const scale = nIn / nOut;
  const support = 2 * Math.max(scale, 1);
  const inv = 1 / Math.max(scale, 1);
  const result: { lo: number; w: Float64Array }[] = [];
  for (let i = 0; i < nOut; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), nIn);
    const w = new Float64Array(hi - lo);
    let sum = 0;
    for (let j = lo; j < hi; j++) {
      w[j - lo] = cubic((j - center + 0.5) * inv);
      sum += w[j - lo];
    }
    for (let k = 0; k < w.length; k++) w[k] /= sum;
    result.push({ lo, w });
  }
  return result;
}
