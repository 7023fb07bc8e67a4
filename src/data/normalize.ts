/**
 * The last per-pixel step, and the only JS loop over every pixel: 8-bit RGB to normalized float,
 * written straight into the batch's [B, H, W, C] array. A greyscale model gets PIL's "L" luma.
 * Random erasing (timm semantics) then works on the normalized values, as timm's does.
 */
import { roundHalfEven } from "./geometry.js";
import { luma } from "./pixel_ops.js";
import { type Rng, randint, uniform } from "./random.js";

export class Normalizer {
  /** lut[c][v] = (v / 255 - mean[c]) / std[c]. */
  private readonly lut: Float32Array[];

  constructor(
    readonly inChans: number,
    mean: readonly number[],
    std: readonly number[],
  ) {
    this.lut = Array.from({ length: inChans }, (_, c) => {
      const t = new Float32Array(256);
      for (let v = 0; v < 256; v++) t[v] = (v / 255 - mean[c]) / std[c];
      return t;
    });
  }

  /** px: size*size RGB bytes; writes size*size*inChans floats at dst[offset...]. */
  into(dst: Float32Array, offset: number, px: Uint8Array): void {
    const n = px.length / 3;
    if (this.inChans === 1) {
      const t = this.lut[0];
      for (let i = 0; i < n; i++) dst[offset + i] = t[luma(px[3 * i], px[3 * i + 1], px[3 * i + 2])];
      return;
    }
    const [r, g, b] = this.lut;
    for (let i = 0, j = offset; i < 3 * n; i += 3, j += 3) {
      dst[j] = r[px[i]];
      dst[j + 1] = g[px[i + 1]];
      dst[j + 2] = b[px[i + 2]];
    }
  }
}

/**
 * timm RandomErasing(probability, mode="pixel", min_area=0.02, max_area=1/3, min_aspect=0.3,
 * count=1) on one normalized [size, size, chans] image: a box of per-pixel N(0, 1) noise.
 */
export function randomErase(
  dst: Float32Array,
  offset: number,
  size: number,
  chans: number,
  probability: number,
  rng: Rng,
): void {
  if (rng.uniform() > probability) return;
  const area = size * size;
  const logAspect = [Math.log(0.3), Math.log(1 / 0.3)];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = uniform(rng, 0.02, 1 / 3) * area;
    const aspect = Math.exp(uniform(rng, logAspect[0], logAspect[1]));
    const h = roundHalfEven(Math.sqrt(target * aspect));
    const w = roundHalfEven(Math.sqrt(target / aspect));
    if (w < size && h < size) {
      const top = randint(rng, 0, size - h);
      const left = randint(rng, 0, size - w);
      for (let y = top; y < top + h; y++) {
        const row = offset + (y * size + left) * chans;
        for (let k = 0; k < w * chans; k++) dst[row + k] = rng.normal();
      }
      return;
    }
  }
}
