/**
 * timm's Mixup / CutMix in batch mode (timm/data/mixup.py): with probability `prob` the whole
 * batch is mixed with its reverse (image i with image B-1-i), by mixup or, with probability
 * `switchProb` when both are on, by cutmix; lambda ~ Beta(alpha, alpha), corrected to the box's
 * true area for cutmix. Targets are label-smoothed one-hots mixed by the same lambda, so every row
 * sums to 1. The trainer calls it on each batch with that step's Rng (stepRng).
 */
import type { AugConfig } from "../config/schema.js";
import { beta, type Rng, randint } from "./random.js";

export interface MixupOptions {
  mixupAlpha: number;
  cutmixAlpha: number;
  /** Probability of mixing a batch at all. */
  prob: number;
  /** Probability of cutmix rather than mixup when both are enabled. */
  switchProb: number;
  labelSmoothing: number;
  numClasses: number;
}

/** The mixup settings of a config, or null when neither mixup nor cutmix is on. */
export function mixupOptions(
  aug: AugConfig,
  labelSmoothing: number,
  numClasses: number,
): MixupOptions | null {
  if (aug.mixup <= 0 && aug.cutmix <= 0) return null;
  return {
    mixupAlpha: aug.mixup,
    cutmixAlpha: aug.cutmix,
    prob: aug.mixup_prob,
    switchProb: aug.mixup_switch_prob,
    labelSmoothing,
    numClasses,
  };
}

export interface MixResult {
  /** [size, numClasses] soft targets; each row sums to 1. */
  targets: Float32Array;
  /** Weight of each image's own label (1 when the batch was not mixed). */
  lam: number;
  mode: "none" | "mixup" | "cutmix";
  /** The pasted region for cutmix, in pixels [top, bottom) x [left, right). */
  box?: { top: number; bottom: number; left: number; right: number };
}

/** timm's mixup_target: smoothed one-hots of the labels and of the reversed labels, mixed by lam. */
export function mixupTargets(
  labels: Int32Array,
  numClasses: number,
  lam: number,
  smoothing: number,
): Float32Array {
  const n = labels.length;
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  const t = new Float32Array(n * numClasses).fill(off);
  for (let i = 0; i < n; i++) {
    t[i * numClasses + labels[i]] += lam * (on - off);
    t[i * numClasses + labels[n - 1 - i]] += (1 - lam) * (on - off);
  }
  return t;
}

/** Mix `batch.images` ([size, H, W, C]) in place and return the soft targets. */
export function mixupCutmix(
  batch: { images: Float32Array; labels: Int32Array; size: number },
  shape: readonly [height: number, width: number, chans: number],
  o: MixupOptions,
  rng: Rng,
): MixResult {
  const { images, size } = batch;
  const labels = batch.labels.subarray(0, size);
  const [H, W, C] = shape;
  const stride = H * W * C;
  let lam = 1;
  let cutmix = false;
  if (rng.uniform() < o.prob) {
    if (o.mixupAlpha > 0 && o.cutmixAlpha > 0) {
      cutmix = rng.uniform() < o.switchProb;
      lam = cutmix ? beta(rng, o.cutmixAlpha, o.cutmixAlpha) : beta(rng, o.mixupAlpha, o.mixupAlpha);
    } else if (o.mixupAlpha > 0) {
      lam = beta(rng, o.mixupAlpha, o.mixupAlpha);
    } else {
      cutmix = true;
      lam = beta(rng, o.cutmixAlpha, o.cutmixAlpha);
    }
  }
  if (lam === 1)
    return { targets: mixupTargets(labels, o.numClasses, 1, o.labelSmoothing), lam, mode: "none" };

  if (!cutmix) {
    // Pairs (i, B-1-i) read each other's original values, so mix each pair at once.
    for (let i = 0; i < size >> 1; i++) {
      const a = i * stride;
      const b = (size - 1 - i) * stride;
      for (let k = 0; k < stride; k++) {
        const x = images[a + k];
        const y = images[b + k];
        images[a + k] = lam * x + (1 - lam) * y;
        images[b + k] = lam * y + (1 - lam) * x;
      }
    }
    return { targets: mixupTargets(labels, o.numClasses, lam, o.labelSmoothing), lam, mode: "mixup" };
  }

  // timm rand_bbox + correct_lam: a box of area (1 - lam) around a uniform centre, clipped.
  const ratio = Math.sqrt(1 - lam);
  const cutH = Math.trunc(H * ratio);
  const cutW = Math.trunc(W * ratio);
  const cy = randint(rng, 0, H - 1);
  const cx = randint(rng, 0, W - 1);
  const top = Math.max(0, cy - (cutH >> 1));
  const bottom = Math.min(H, cy + (cutH >> 1));
  const left = Math.max(0, cx - (cutW >> 1));
  const right = Math.min(W, cx + (cutW >> 1));
  lam = 1 - ((bottom - top) * (right - left)) / (H * W);
  const rowLen = (right - left) * C;
  for (let i = 0; i < size >> 1; i++) {
    const a = i * stride;
    const b = (size - 1 - i) * stride;
    for (let y = top; y < bottom; y++) {
      const off = (y * W + left) * C;
      const rowA = images.slice(a + off, a + off + rowLen);
      images.copyWithin(a + off, b + off, b + off + rowLen);
      images.set(rowA, b + off);
    }
  }
  return {
    targets: mixupTargets(labels, o.numClasses, lam, o.labelSmoothing),
    lam,
    mode: "cutmix",
    box: { top, bottom, left, right },
  };
}
