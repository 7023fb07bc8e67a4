/**
 * Seeded randomness for init, dropout and drop path, computed in JS so the numbers are the same
 * on every backend (tfjs' own random ops differ between backends and versions).
 *
 * Counter-based: value i of a stream is a hash of (stream key, i), so a stream can be cut anywhere
 * and streams derived from (seed, name) never depend on the order other streams were drawn in.
 */

/** A 32-bit integer finaliser with full avalanche (Wellons' "lowbias32"). */
function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over the UTF-16 code units: a stable 32-bit id for a stream name. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The key of stream `stream` under `seed` (any non-negative integer below 2^53). */
export function streamKey(seed: number, stream: string | number): number {
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 0x100000000) >>> 0;
  const id = typeof stream === "string" ? hashString(stream) : stream >>> 0;
  return mix32(mix32(lo ^ mix32(hi + 0x9e3779b9)) ^ mix32(id + 0x85ebca6b));
}

const TWO_POW_32 = 0x100000000;

export class Rng {
  private counter = 0;
  private spare: number | null = null;

  constructor(private readonly key: number) {}

  static from(seed: number, stream: string | number): Rng {
    return new Rng(streamKey(seed, stream));
  }

  /** Uniform in the open interval (0, 1), 32 bits of resolution. */
  uniform(): number {
    const bits = mix32(mix32(this.counter++) ^ this.key);
    return (bits + 0.5) / TWO_POW_32;
  }

  /** Standard normal by Box–Muller; the second value of each pair is kept for the next call. */
  normal(): number {
    if (this.spare !== null) {
      const z = this.spare;
      this.spare = null;
      return z;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const theta = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** Standard normal conditioned on [lo, hi], by rejection (the bounds here are >= 2 sigma wide). */
  truncatedNormal(lo: number, hi: number): number {
    for (;;) {
      const z = this.normal();
      if (z >= lo && z <= hi) return z;
    }
  }
}
