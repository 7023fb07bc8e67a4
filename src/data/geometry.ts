/**
 * The crop and resize arithmetic of timm / torchvision, to the pixel: RandomResizedCrop's box
 * (with its fallback to a centre crop after 10 tries), the eval resize + centre crop, and the
 * working size of images kept in memory. Python's round() is round-half-even; so is ours.
 */
import { type Rng, randint, uniform } from "./random.js";

export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Python 3 round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** timm RandomResizedCropAndInterpolation.get_params on a width x height image. */
export function randomResizedCrop(
  width: number,
  height: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
  rng: Rng,
): Box {
  const area = width * height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = uniform(rng, scale[0], scale[1]) * area;
    const aspect = Math.exp(uniform(rng, logRatio[0], logRatio[1]));
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w <= width && h <= height && w > 0 && h > 0) {
      const top = randint(rng, 0, height - h);
      const left = randint(rng, 0, width - w);
      return { left, top, width: w, height: h };
    }
  }
  // Fallback: the largest centre crop whose aspect ratio is inside the range.
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(...ratio)) h = roundHalfEven(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = roundHalfEven(h * Math.max(...ratio));
  return { left: Math.trunc((width - w) / 2), top: Math.trunc((height - h) / 2), width: w, height: h };
}

/**
 * timm's eval transform: Resize(floor(imgSize / cropPct)) on the shorter side (torchvision
 * truncates the longer one), then CenterCrop(imgSize) with round-half-even offsets.
 */
export function evalResizeCrop(
  width: number,
  height: number,
  imgSize: number,
  cropPct: number,
): { width: number; height: number; crop: Box } {
  const short = Math.floor(imgSize / cropPct);
  const [w, h] =
    width <= height
      ? [short, Math.trunc((short * height) / width)]
      : [Math.trunc((short * width) / height), short];
  const crop = {
    left: roundHalfEven((w - imgSize) / 2),
    top: roundHalfEven((h - imgSize) / 2),
    width: imgSize,
    height: imgSize,
  };
  return { width: w, height: h, crop };
}

/**
 * Size at which `data.cache` keeps a training image: the shorter side at most 1.5 x imgSize
 * (never enlarged), enough for random-resized-crop to keep most of the detail it would get from
 * the file while bounding the memory of a cached 12 MP photo.
 */
export function workingSize(
  width: number,
  height: number,
  imgSize: number,
): { width: number; height: number } {
  const target = Math.ceil(1.5 * imgSize);
  const short = Math.min(width, height);
  if (short <= target) return { width, height };
  return width <= height
    ? { width: target, height: Math.max(1, Math.round((target * height) / width)) }
    : { width: Math.max(1, Math.round((target * width) / height)), height: target };
}

/** A box drawn in a from-size image, mapped to the same region of a to-size copy of it. */
export function scaleBox(
  box: Box,
  from: { width: number; height: number },
  to: { width: number; height: number },
): Box {
  if (from.width === to.width && from.height === to.height) return box;
  const sx = to.width / from.width;
  const sy = to.height / from.height;
  const width = Math.max(1, Math.min(to.width, Math.round(box.width * sx)));
  const height = Math.max(1, Math.min(to.height, Math.round(box.height * sy)));
  return {
    left: Math.min(to.width - width, Math.round(box.left * sx)),
    top: Math.min(to.height - height, Math.round(box.top * sy)),
    width,
    height,
  };
}
