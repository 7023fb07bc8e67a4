/**
 * timm's train and eval image transforms on sharp, up to (not including) normalisation:
 *   train: RandomResizedCrop -> horizontal flip -> RandAugment, or ColorJitter when there is none
 *          (timm turns colour jitter off under RandAugment);
 *   eval:  resize the shorter side to img_size / crop_pct -> centre crop.
 * The crop, resize, flip and colour conversion of one image are a single sharp pipeline.
 * Interpolation: sharp's `cubic` kernel is Catmull-Rom (a = -0.5) like PIL's bicubic; when
 * shrinking it matches PIL to ~0.25 grey levels on average.
 */
import type { DataConfig } from "../config/schema.js";
import { type ImageInput, sharpOf, toRgb } from "./decode.js";
import { evalResizeCrop, randomResizedCrop, scaleBox, workingSize } from "./geometry.js";
import * as ops from "./pixel_ops.js";
import { type OpContext, parseRandAugment, type RandAugmentSpec, randAugment } from "./rand_augment.js";
import { type Rng, shuffle, uniform } from "./random.js";

const KERNELS = { bicubic: "cubic", bilinear: "linear", nearest: "nearest" } as const;

export interface TransformOptions {
  imgSize: number;
  cropPct: number;
  kernel: (typeof KERNELS)[keyof typeof KERNELS];
  scale: readonly [number, number];
  ratio: readonly [number, number];
  hflip: number;
  colorJitter: number;
  randAugment: RandAugmentSpec | null;
  /** Geometric RandAugment ops: fill colour (timm's img_mean) and interpolator. */
  augment: OpContext;
}

/** The transform settings of a config; a bad RandAugment string throws ConfigError here. */
export function transformOptions(data: DataConfig, imgSize: number): TransformOptions {
  const mean = data.mean.length === 1 ? [data.mean[0], data.mean[0], data.mean[0]] : data.mean;
  const fill = mean.slice(0, 3).map((m) => Math.min(255, Math.round(255 * m))) as [number, number, number];
  return {
    imgSize,
    cropPct: data.crop_pct,
    kernel: KERNELS[data.interpolation],
    scale: data.aug.scale,
    ratio: data.aug.ratio,
    hflip: data.aug.hflip,
    colorJitter: data.aug.color_jitter,
    randAugment: data.aug.rand_augment ? parseRandAugment(data.aug.rand_augment) : null,
    augment: { size: imgSize, fill, interpolator: data.interpolation },
  };
}

/** torchvision ColorJitter(b, c, s) on PIL: each factor in [max(0, 1-s), 1+s], random order. */
export function colorJitter(px: Uint8Array, strength: number, rng: Rng): void {
  const lo = Math.max(0, 1 - strength);
  const hi = 1 + strength;
  const jitters = [ops.brightness, ops.contrast, ops.color];
  for (const i of shuffle(rng, Int32Array.of(0, 1, 2))) jitters[i](px, uniform(rng, lo, hi));
}

/** One training image as imgSize^2 RGB bytes; every random choice comes from `rng`. */
export async function trainImage(img: ImageInput, o: TransformOptions, rng: Rng): Promise<Buffer> {
  const S = o.imgSize;
  // The box is drawn in the original size so a cached (smaller) copy is cropped the same way.
  const box = randomResizedCrop(img.origWidth, img.origHeight, o.scale, o.ratio, rng);
  const flip = o.hflip > 0 && rng.uniform() < o.hflip;
  const pipeline = sharpOf(img)
    .extract(scaleBox(box, { width: img.origWidth, height: img.origHeight }, img))
    .resize(S, S, { fit: "fill", kernel: o.kernel })
    .flop(flip);
  let { data: px } = await toRgb(img.file, pipeline);
  if (o.randAugment) px = await randAugment(px, o.randAugment, o.augment, rng);
  else if (o.colorJitter > 0) colorJitter(px, o.colorJitter, rng);
  return px;
}

/** One evaluation image as imgSize^2 RGB bytes. */
export async function evalImage(img: ImageInput, o: TransformOptions): Promise<Buffer> {
  const g = evalResizeCrop(img.width, img.height, o.imgSize, o.cropPct);
  let pipeline = sharpOf(img);
  if (g.width !== img.width || g.height !== img.height) {
    pipeline = pipeline.resize(g.width, g.height, { fit: "fill", kernel: o.kernel });
  }
  return (await toRgb(img.file, pipeline.extract(g.crop))).data;
}

/** A decoded copy of a training image at its working size, for `data.cache`. */
export async function workingCopy(img: ImageInput, o: TransformOptions): Promise<ImageInput> {
  const ws = workingSize(img.width, img.height, o.imgSize);
  let pipeline = sharpOf(img);
  if (ws.width !== img.width || ws.height !== img.height) {
    pipeline = pipeline.resize(ws.width, ws.height, { fit: "fill", kernel: o.kernel });
  }
  const { data } = await toRgb(img.file, pipeline);
  return { ...img, data, raw: true, width: ws.width, height: ws.height };
}
