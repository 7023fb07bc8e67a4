/**
 * timm's RandAugment (timm/data/auto_augment.py): `rand-m9-n2-mstd0.5` picks n of 15 ops per
 * image, each applied with probability 0.5 at magnitude m (out of 10), optionally jittered by a
 * Gaussian of std mstd. Geometric ops are one sharp affine with PIL's pixel-centre mapping and
 * fill colour; sharpness is a sharp 3x3 convolution; the colour ops are PIL's LUTs and blends.
 */
import sharp from "sharp";
import { ConfigError } from "../errors.js";
import * as ops from "./pixel_ops.js";
import { type Rng, randint, uniform, weightedIndex } from "./random.js";

export interface RandAugmentSpec {
  magnitude: number;
  numLayers: number;
  /** Std of the magnitude noise; Infinity samples uniformly in [0, magnitude]. */
  magnitudeStd: number;
  magnitudeMax: number;
  /** `inc1`: the variants whose strength grows with the magnitude. */
  increasing: boolean;
  /** `w0`: timm's op weights (choice without replacement). */
  weighted: boolean;
}

/** Parse timm's config string; an unknown section is a config error naming the key. */
export function parseRandAugment(config: string): RandAugmentSpec {
  const [head, ...sections] = config.split("-");
  const key = "data.aug.rand_augment";
  if (head !== "rand") throw new ConfigError(`${key}: "${config}" must start with "rand"`);
  const spec: RandAugmentSpec = {
    magnitude: 10,
    numLayers: 2,
    magnitudeStd: 0,
    magnitudeMax: 10,
    increasing: false,
    weighted: false,
  };
  for (const section of sections) {
    const m = /^([a-z]+)(\d.*)$/.exec(section);
    const value = m ? Number(m[2]) : Number.NaN;
    if (!m || !Number.isFinite(value)) {
      throw new ConfigError(`${key}: cannot read section "${section}" of "${config}"`);
    }
    switch (m[1]) {
      case "m":
        spec.magnitude = Math.trunc(value);
        break;
      case "n":
        spec.numLayers = Math.trunc(value);
        break;
      case "mstd":
        spec.magnitudeStd = value > 100 ? Number.POSITIVE_INFINITY : value;
        break;
      case "mmax":
        spec.magnitudeMax = Math.trunc(value);
        break;
      case "inc":
        spec.increasing = value !== 0;
        break;
      case "w":
        spec.weighted = true;
        break;
      default:
        throw new ConfigError(
          `${key}: unknown section "${section}" in "${config}" (expected m, n, mstd, mmax, inc, w)`,
        );
    }
  }
  return spec;
}

/** Everything an op needs besides the pixels. */
export interface OpContext {
  size: number;
  /** timm's img_mean: the fill of areas a geometric op uncovers. */
  fill: [number, number, number];
  interpolator: "bicubic" | "bilinear" | "nearest";
}

/** Fill-coloured border added around an image before a geometric op (see pilAffine). */
const MARGIN = 2;

type Op = (px: Buffer, level: number, ctx: OpContext, rng: Rng) => Buffer | Promise<Buffer>;

const negate = (rng: Rng, v: number) => (rng.uniform() > 0.5 ? -v : v);
const enhanceLevel = (m: number) => (m / 10) * 1.8 + 0.1;
const enhanceIncreasing = (m: number, rng: Rng) => Math.max(0.1, 1 + negate(rng, (m / 10) * 0.9));

function inPlace(f: (px: Uint8Array) => void): (px: Buffer) => Buffer {
  return (px) => {
    f(px);
    return px;
  };
}

/**
 * PIL's Image.transform(size, AFFINE, (a, b, c, d, e, f)): output pixel centre (x, y) samples the
 * input at (a x + b y + c, d x + e y + f); the output keeps the input's size.
 */
export async function pilAffine(px: Buffer, inv: readonly number[], ctx: OpContext): Promise<Buffer> {
  const [a, b, c, d, e, f] = inv;
  const S = ctx.size;
  const det = a * e - b * d;
  const M: [number, number, number, number] = [e / det, -b / det, -d / det, a / det];
  // libvips draws M p on a canvas that covers the transformed input, with its origin at the
  // rounded minimum of the transformed corners; its offsets move the content but not the canvas,
  // and the canvas can miss the input's last row or column. So the input gets a margin of fill
  // colour, libvips gets only the sub-pixel part of the translation, and the whole-pixel part
  // picks our S x S window out of the canvas.
  const P = S + 2 * MARGIN;
  const padded = Buffer.alloc(P * P * 3);
  for (let i = 0; i < P * P; i++) padded.set(ctx.fill, i * 3);
  for (let y = 0; y < S; y++)
    padded.set(px.subarray(y * S * 3, (y + 1) * S * 3), ((y + MARGIN) * P + MARGIN) * 3);
  // Forward map in pixel indices: X = M p + t for the unpadded input, t = M (0.5 - (c, f)) - 0.5.
  const tx = M[0] * (0.5 - c) + M[1] * (0.5 - f) - 0.5 - (M[0] + M[1]) * MARGIN;
  const ty = M[2] * (0.5 - c) + M[3] * (0.5 - f) - 0.5 - (M[2] + M[3]) * MARGIN;
  const [ix, iy] = [Math.round(tx), Math.round(ty)];
  const { data, info } = await sharp(padded, { raw: { width: P, height: P, channels: 3 } })
    .affine(M, {
      odx: tx - ix,
      ody: ty - iy,
      background: { r: ctx.fill[0], g: ctx.fill[1], b: ctx.fill[2] },
      interpolator: ctx.interpolator,
    })
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`affine returned ${info.channels} channels`);
  const corners = [
    [0, 0],
    [P, 0],
    [0, P],
    [P, P],
  ];
  const x0 = -Math.round(Math.min(...corners.map(([x, y]) => M[0] * x + M[1] * y))) - ix;
  const y0 = -Math.round(Math.min(...corners.map(([x, y]) => M[2] * x + M[3] * y))) - iy;
  const out = Buffer.alloc(S * S * 3);
  for (let i = 0; i < S * S; i++) out.set(ctx.fill, i * 3);
  const xa = Math.max(0, -x0);
  const xb = Math.min(S, info.width - x0);
  for (let y = 0; y < S && xb > xa; y++) {
    const sy = y0 + y;
    if (sy < 0 || sy >= info.height) continue;
    const src = (sy * info.width + x0 + xa) * 3;
    out.set(data.subarray(src, src + (xb - xa) * 3), (y * S + xa) * 3);
  }
  return out;
}

/** PIL Image.rotate(degrees) about the centre, same size: counter-clockwise for positive angles. */
function rotate(px: Buffer, degrees: number, ctx: OpContext): Promise<Buffer> {
  const t = (-degrees * Math.PI) / 180;
  const [cos, sin] = [Math.cos(t), Math.sin(t)];
  const c = ctx.size / 2;
  return pilAffine(px, [cos, sin, c - cos * c - sin * c, -sin, cos, c + sin * c - cos * c], ctx);
}

/** ImageEnhance.Sharpness: blend with PIL's SMOOTH filter, folded into one 3x3 kernel. */
async function sharpness(px: Buffer, factor: number, ctx: OpContext): Promise<Buffer> {
  const kernel = [1, 1, 1, 1, 5, 1, 1, 1, 1].map((v) => ((1 - factor) * v) / 13);
  kernel[4] += factor;
  return sharp(px, { raw: { width: ctx.size, height: ctx.size, channels: 3 } })
    .convolve({ width: 3, height: 3, kernel, scale: 1 })
    .raw()
    .toBuffer();
}

/** timm's NAME_TO_OP with LEVEL_TO_ARG folded in: each op takes the magnitude level (0..10). */
const OPS: Record<string, Op> = {
  AutoContrast: inPlace(ops.autoContrast),
  Equalize: inPlace(ops.equalize),
  Invert: inPlace(ops.invert),
  Rotate: (px, m, ctx, rng) => rotate(px, negate(rng, (m / 10) * 30), ctx),
  Posterize: (px, m) => inPlace((p) => ops.posterize(p, Math.trunc((m / 10) * 4)))(px),
  PosterizeIncreasing: (px, m) => inPlace((p) => ops.posterize(p, 4 - Math.trunc((m / 10) * 4)))(px),
  Solarize: (px, m) => inPlace((p) => ops.solarize(p, Math.trunc((m / 10) * 256)))(px),
  SolarizeIncreasing: (px, m) => inPlace((p) => ops.solarize(p, 256 - Math.trunc((m / 10) * 256)))(px),
  SolarizeAdd: (px, m) => inPlace((p) => ops.solarizeAdd(p, Math.trunc((m / 10) * 110)))(px),
  Color: (px, m) => inPlace((p) => ops.color(p, enhanceLevel(m)))(px),
  ColorIncreasing: (px, m, _c, rng) => inPlace((p) => ops.color(p, enhanceIncreasing(m, rng)))(px),
  Contrast: (px, m) => inPlace((p) => ops.contrast(p, enhanceLevel(m)))(px),
  ContrastIncreasing: (px, m, _c, rng) => inPlace((p) => ops.contrast(p, enhanceIncreasing(m, rng)))(px),
  Brightness: (px, m) => inPlace((p) => ops.brightness(p, enhanceLevel(m)))(px),
  BrightnessIncreasing: (px, m, _c, rng) => inPlace((p) => ops.brightness(p, enhanceIncreasing(m, rng)))(px),
  Sharpness: (px, m, ctx) => sharpness(px, enhanceLevel(m), ctx),
  SharpnessIncreasing: (px, m, ctx, rng) => sharpness(px, enhanceIncreasing(m, rng), ctx),
  ShearX: (px, m, ctx, rng) => pilAffine(px, [1, negate(rng, (m / 10) * 0.3), 0, 0, 1, 0], ctx),
  ShearY: (px, m, ctx, rng) => pilAffine(px, [1, 0, 0, negate(rng, (m / 10) * 0.3), 1, 0], ctx),
  TranslateXRel: (px, m, ctx, rng) =>
    pilAffine(px, [1, 0, negate(rng, (m / 10) * 0.45) * ctx.size, 0, 1, 0], ctx),
  TranslateYRel: (px, m, ctx, rng) =>
    pilAffine(px, [1, 0, 0, 0, 1, negate(rng, (m / 10) * 0.45) * ctx.size], ctx),
};

const RAND_TRANSFORMS = [
  "AutoContrast",
  "Equalize",
  "Invert",
  "Rotate",
  "Posterize",
  "Solarize",
  "SolarizeAdd",
  "Color",
  "Contrast",
  "Brightness",
  "Sharpness",
  "ShearX",
  "ShearY",
  "TranslateXRel",
  "TranslateYRel",
];
const RAND_INCREASING_TRANSFORMS = RAND_TRANSFORMS.map((name) =>
  ["Posterize", "Solarize", "Color", "Contrast", "Brightness", "Sharpness"].includes(name)
    ? `${name}Increasing`
    : name,
);
/** timm's _RAND_CHOICE_WEIGHTS_0, in RAND_TRANSFORMS order. */
const CHOICE_WEIGHTS = [
  0.025, 0.005, 0, 0.3, 0, 0.005, 0.005, 0.025, 0.005, 0.005, 0.025, 0.2, 0.2, 0.1, 0.1,
];

/** The op names drawn for one image (exported for tests). */
export function chooseOps(spec: RandAugmentSpec, rng: Rng): string[] {
  const names = spec.increasing ? RAND_INCREASING_TRANSFORMS : RAND_TRANSFORMS;
  if (!spec.weighted)
    return Array.from({ length: spec.numLayers }, () => names[randint(rng, 0, names.length - 1)]);
  const weights = [...CHOICE_WEIGHTS];
  const out: string[] = [];
  for (let k = 0; k < Math.min(spec.numLayers, names.length); k++) {
    const i = weightedIndex(rng, weights);
    out.push(names[i]);
    weights[i] = 0;
  }
  return out;
}

/** RandAugment on an RGB crop of ctx.size^2; returns the augmented pixels (maybe the same buffer). */
export async function randAugment(
  px: Buffer,
  spec: RandAugmentSpec,
  ctx: OpContext,
  rng: Rng,
): Promise<Buffer> {
  let out = px;
  for (const name of chooseOps(spec, rng)) {
    if (rng.uniform() > 0.5) continue;
    let m = spec.magnitude;
    if (spec.magnitudeStd === Number.POSITIVE_INFINITY) m = uniform(rng, 0, m);
    else if (spec.magnitudeStd > 0) m += spec.magnitudeStd * rng.normal();
    m = Math.max(0, Math.min(m, spec.magnitudeMax));
    out = await OPS[name](out, m, ctx, rng);
  }
  return out;
}
