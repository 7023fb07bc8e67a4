/**
 * Colour operations on 8-bit RGB pixels with PIL's exact arithmetic (ImageEnhance, ImageOps), as
 * timm's ColorJitter and RandAugment call them. They are per-pixel table lookups or blends that
 * sharp has no operation for (a LUT, PIL's truncating blend), and over a 224x224 crop one pass
 * costs a fraction of the decode, so they run in place in JS.
 */

/** PIL's "L" conversion: ITU-R 601-2 luma in 16-bit fixed point. */
export function luma(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

/** PIL Image.blend(degenerate, image, f) with its truncation and clipping; `grey` is per pixel. */
function blend(px: Uint8Array, factor: number, degenerate: (i: number) => number): void {
  for (let i = 0; i < px.length; i++) {
    const d = degenerate(i);
    const v = Math.trunc(d + factor * (px[i] - d));
    px[i] = Math.min(255, Math.max(0, v));
  }
}

/** ImageEnhance.Brightness: blend with black. */
export function brightness(px: Uint8Array, factor: number): void {
  blend(px, factor, () => 0);
}

/** ImageEnhance.Contrast: blend with the mean grey level of the image (rounded, as PIL). */
export function contrast(px: Uint8Array, factor: number): void {
  let sum = 0;
  for (let i = 0; i < px.length; i += 3) sum += luma(px[i], px[i + 1], px[i + 2]);
  const mean = Math.trunc(sum / (px.length / 3) + 0.5);
  blend(px, factor, () => mean);
}

/** ImageEnhance.Color (saturation): blend with the image's own greyscale version. */
export function color(px: Uint8Array, factor: number): void {
  let grey = 0;
  blend(px, factor, (i) => {
    if (i % 3 === 0) grey = luma(px[i], px[i + 1], px[i + 2]);
    return grey;
  });
}

function applyLut(px: Uint8Array, lut: Uint8Array | Uint8Array[]): void {
  if (lut instanceof Uint8Array) {
    for (let i = 0; i < px.length; i++) px[i] = lut[px[i]];
    return;
  }
  for (let i = 0; i < px.length; i++) px[i] = lut[i % 3][px[i]];
}

function lutOf(f: (v: number) => number): Uint8Array {
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = Math.max(0, Math.min(255, f(v)));
  return lut;
}

function histograms(px: Uint8Array): Uint32Array[] {
  const h = [new Uint32Array(256), new Uint32Array(256), new Uint32Array(256)];
  for (let i = 0; i < px.length; i++) h[i % 3][px[i]]++;
  return h;
}

export function invert(px: Uint8Array): void {
  applyLut(
    px,
    lutOf((v) => 255 - v),
  );
}

/** ImageOps.posterize: keep the top `bits` bits. */
export function posterize(px: Uint8Array, bits: number): void {
  if (bits >= 8) return;
  const mask = ~(2 ** (8 - bits) - 1) & 0xff;
  applyLut(
    px,
    lutOf((v) => v & mask),
  );
}

/** ImageOps.solarize: invert values at or above the threshold. */
export function solarize(px: Uint8Array, threshold: number): void {
  applyLut(
    px,
    lutOf((v) => (v < threshold ? v : 255 - v)),
  );
}

/** timm's solarize_add: add to values below the threshold. */
export function solarizeAdd(px: Uint8Array, add: number, threshold = 128): void {
  applyLut(
    px,
    lutOf((v) => (v < threshold ? Math.min(255, v + add) : v)),
  );
}

/** ImageOps.autocontrast (cutoff 0): stretch each channel's range to 0..255. */
export function autoContrast(px: Uint8Array): void {
  const luts = histograms(px).map((h) => {
    let lo = 0;
    while (lo < 255 && h[lo] === 0) lo++;
    let hi = 255;
    while (hi > 0 && h[hi] === 0) hi--;
    if (hi <= lo) return lutOf((v) => v);
    const scale = 255 / (hi - lo);
    return lutOf((v) => Math.trunc(v * scale - lo * scale));
  });
  applyLut(px, luts);
}

/** ImageOps.equalize: per-channel histogram equalisation. */
export function equalize(px: Uint8Array): void {
  const luts = histograms(px).map((h) => {
    const used = Array.from(h).filter((c) => c > 0);
    const step =
      used.length <= 1 ? 0 : Math.floor((used.reduce((s, c) => s + c, 0) - used[used.length - 1]) / 255);
    if (step === 0) return lutOf((v) => v);
    const lut = new Uint8Array(256);
    let n = Math.floor(step / 2);
    for (let v = 0; v < 256; v++) {
      lut[v] = Math.min(255, Math.floor(n / step));
      n += h[v];
    }
    return lut;
  });
  applyLut(px, luts);
}
