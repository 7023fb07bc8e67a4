/**
 * The draws the data pipeline needs, on top of the project's counter-based Rng. Each helper
 * mirrors the Python call timm makes (random.uniform, random.randint, np.random.beta) so the
 * transforms read like their timm originals.
 */
import { Rng, streamKey } from "../random.js";

export { Rng };

/** random.uniform(lo, hi). */
export function uniform(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng.uniform();
}

/** random.randint(lo, hi): an integer in [lo, hi], both ends included. */
export function randint(rng: Rng, lo: number, hi: number): number {
  return lo + Math.min(hi - lo, Math.floor(rng.uniform() * (hi - lo + 1)));
}

/** Gamma(shape, 1) by Marsaglia and Tsang; shapes below 1 use the boost Gamma(a+1) * U^(1/a). */
function gamma(rng: Rng, shape: number): number {
  if (shape < 1) return gamma(rng, shape + 1) * rng.uniform() ** (1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const z = rng.normal();
    const v = (1 + c * z) ** 3;
    if (v <= 0) continue;
    if (Math.log(rng.uniform()) < 0.5 * z * z + d - d * v + d * Math.log(v)) return d * v;
  }
}

/** np.random.beta(a, b). */
export function beta(rng: Rng, a: number, b: number): number {
  const x = gamma(rng, a);
  return x / (x + gamma(rng, b));
}

/** In-place Fisher-Yates shuffle. */
export function shuffle(rng: Rng, a: Int32Array): Int32Array {
  for (let i = a.length - 1; i > 0; i--) {
    const j = randint(rng, 0, i);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}

/** Index drawn with probability proportional to weights[i]. */
export function weightedIndex(rng: Rng, weights: readonly number[]): number {
  const total = weights.reduce((s, w) => s + w, 0);
  let u = rng.uniform() * total;
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i];
    if (u < 0) return i;
  }
  return weights.length - 1;
}

/**
 * Named streams: the shuffle of an epoch, the augmentation of one slot of an epoch, the mixup of a
 * step. Each is a pure function of its coordinates, so a resumed run redraws exactly the same values.
 */
export function epochRng(seed: number, epoch: number): Rng {
  return Rng.from(streamKey(seed, "data/shuffle"), epoch);
}

export function slotRng(seed: number, epoch: number, position: number): Rng {
  return Rng.from(streamKey(streamKey(seed, "data/augment"), epoch), position);
}

export function stepRng(seed: number, epoch: number, step: number): Rng {
  return Rng.from(streamKey(streamKey(seed, "data/mixup"), epoch), step);
}
