/**
 * The built-in dataset (`data.train: synthetic`): ten classes of shapes and textures drawn as SVG
 * and rendered by sharp, light on a darker background, with random hues, gradient backgrounds,
 * size, position, rotation and pixel noise. The class is the outline, never the colour, so a linear
 * model on raw pixels does poorly while a small ViT learns it in minutes. Generated once per
 * (version, size, count, seed) into the cache folder as an ImageFolder and reused after.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import sharp from "sharp";
import { Rng, streamKey } from "../random.js";
import { randint, uniform } from "./random.js";

/** Bump when the drawing changes, so stale caches are not reused. */
const VERSION = 3;

type Draw = (rng: Rng) => string;

const polygon = (n: number, r: number, inner = r) => {
  const pts: string[] = [];
  const k = inner === r ? n : 2 * n;
  for (let i = 0; i < k; i++) {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / k;
    const rr = i % 2 === 1 && inner !== r ? inner : r;
    pts.push(`${(rr * Math.cos(a)).toFixed(4)},${(rr * Math.sin(a)).toFixed(4)}`);
  }
  return `<polygon points="${pts.join(" ")}"/>`;
};

const grid = (n: number, cell: (x: number, y: number, step: number) => string) => {
  const step = 1.7 / n;
  let out = "";
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) out += cell(-0.85 + j * step, -0.85 + i * step, step);
  return out;
};

/** Each shape in unit coordinates ([-1, 1] square), filled with currentColor. */
const SHAPES: Record<string, Draw> = {
  circle: () => `<circle r="0.9"/>`,
  square: () => `<rect x="-0.72" y="-0.72" width="1.44" height="1.44"/>`,
  triangle: () => polygon(3, 1.0),
  star: () => polygon(5, 1.0, 0.42),
  cross: () => `<path d="M-0.27,-0.95H0.27V-0.27H0.95V0.27H0.27V0.95H-0.27V0.27H-0.95V-0.27H-0.27Z"/>`,
  ring: (rng) =>
    `<circle r="0.68" fill="none" stroke="currentColor" stroke-width="${uniform(rng, 0.28, 0.4)}"/>`,
  bar: () => `<rect x="-0.95" y="-0.2" width="1.9" height="0.4"/>`,
  stripes: (rng) => {
    const n = randint(rng, 3, 4);
    const step = 1.7 / n;
    let out = "";
    for (let i = 0; i < n; i++)
      out += `<rect x="-0.85" y="${-0.85 + i * step}" width="1.7" height="${step / 2}"/>`;
    return out;
  },
  checker: (rng) => {
    const n = randint(rng, 3, 4);
    return grid(n, (x, y, s) =>
      Math.round((x + y) / s) % 2 === 0 ? `<rect x="${x}" y="${y}" width="${s}" height="${s}"/>` : "",
    );
  },
  dots: (rng) => {
    const n = randint(rng, 3, 4);
    return grid(n, (x, y, s) => `<circle cx="${x + s / 2}" cy="${y + s / 2}" r="${s * 0.3}"/>`);
  },
};

export const SYNTHETIC_CLASSES: readonly string[] = Object.keys(SHAPES).sort();

/** sRGB colour as [r, g, b] in 0..255 from hue/saturation/value. */
function hsv(h: number, s: number, v: number): [number, number, number] {
  const f = (n: number) => {
    const k = (n + h / 60) % 6;
    return Math.round(255 * (v - v * s * Math.max(0, Math.min(k, 4 - k, 1))));
  };
  return [f(5), f(3), f(1)];
}

const luma = ([r, g, b]: number[]) => 0.299 * r + 0.587 * g + 0.114 * b;
const hex = (c: number[]) => `#${c.map((v) => v.toString(16).padStart(2, "0")).join("")}`;

/** A random colour whose luma lies in [lo, hi]. */
function colourIn(rng: Rng, lo: number, hi: number): [number, number, number] {
  for (;;) {
    const c = hsv(uniform(rng, 0, 360), uniform(rng, 0, 1), uniform(rng, 0.05, 1));
    if (luma(c) >= lo && luma(c) <= hi) return c;
  }
}

/** One image: the SVG text and the noise level, both drawn from `rng`. */
function drawImage(cls: string, size: number, rng: Rng): { svg: string; noise: number } {
  // Any hue, but the shape is always clearly lighter than its background: the outline is what a
  // model must find, not which of two colours is the shape.
  const bg1 = colourIn(rng, 0, 110);
  const bg2 = rng.uniform() < 0.5 ? colourIn(rng, 0, 110) : bg1;
  const fg = colourIn(rng, Math.max(luma(bg1), luma(bg2)) + 70, 255);
  const extent = uniform(rng, 0.6, 0.85) * size;
  const slack = (0.6 * (size - extent)) / 2;
  const cx = size / 2 + uniform(rng, -slack, slack);
  const cy = size / 2 + uniform(rng, -slack, slack);
  const angle = uniform(rng, 0, 360);
  const gradAngle = uniform(rng, 0, 360);
  const body = SHAPES[cls](rng);
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">` +
    `<defs><linearGradient id="bg" gradientTransform="rotate(${gradAngle.toFixed(2)} 0.5 0.5)">` +
    `<stop offset="0" stop-color="${hex(bg1)}"/><stop offset="1" stop-color="${hex(bg2)}"/></linearGradient></defs>` +
    `<rect width="${size}" height="${size}" fill="url(#bg)"/>` +
    `<g color="${hex(fg)}" fill="${hex(fg)}" transform="translate(${cx.toFixed(3)} ${cy.toFixed(3)}) ` +
    `rotate(${angle.toFixed(2)}) scale(${(extent / 2).toFixed(4)})">${body}</g></svg>`;
  return { svg, noise: uniform(rng, 2, 10) };
}

/** Render one image to PNG bytes: the SVG, then Gaussian pixel noise drawn from the same stream. */
async function renderImage(cls: string, size: number, rng: Rng): Promise<Buffer> {
  const { svg, noise } = drawImage(cls, size, rng);
  const raw = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer();
  for (let i = 0; i < raw.length; i++)
    raw[i] = Math.max(0, Math.min(255, Math.round(raw[i] + noise * rng.normal())));
  return sharp(raw, { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toBuffer();
}

export function defaultCacheDir(): string {
  if (process.env.VIT_CACHE_DIR) return process.env.VIT_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(base, "vit");
}

export interface SyntheticOptions {
  /** Images per class. */
  perClass: number;
  /** Side of the square images in pixels. */
  size: number;
  /** Seed of the dataset's content (independent of the training seed). */
  seed?: number;
  cacheDir?: string;
}

const MARKER = ".complete";

/**
 * The folder holding the dataset (root/<class>/<i>.png), generated on first use. The images are
 * written to a private temp folder that is renamed into place after its marker file, so an
 * interrupted generation leaves nothing that looks finished and is simply redone.
 */
export async function ensureSynthetic(opts: SyntheticOptions): Promise<string> {
  const seed = opts.seed ?? 0;
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const root = path.join(cacheDir, `synthetic-v${VERSION}-${opts.size}px-${opts.perClass}-seed${seed}`);
  if (fs.existsSync(path.join(root, MARKER))) return root;
  fs.mkdirSync(cacheDir, { recursive: true });
  const tmp = `${root}.tmp-${process.pid}-${Date.now()}`;
  try {
    await generate(tmp, opts.perClass, opts.size, seed);
    fs.writeFileSync(path.join(tmp, MARKER), "");
    fs.rmSync(root, { recursive: true, force: true });
    fs.renameSync(tmp, root);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    // Another process may have finished the same dataset first; theirs is as good as ours.
    if (fs.existsSync(path.join(root, MARKER))) return root;
    throw err;
  }
  return root;
}

async function generate(dir: string, perClass: number, size: number, seed: number): Promise<void> {
  const key = streamKey(seed, `synthetic/v${VERSION}`);
  const jobs: { cls: string; i: number; label: number }[] = [];
  SYNTHETIC_CLASSES.forEach((cls, label) => {
    fs.mkdirSync(path.join(dir, cls), { recursive: true });
    for (let i = 0; i < perClass; i++) jobs.push({ cls, i, label });
  });
  // sharp renders in its own thread pool: keep a few images in flight per core.
  const inFlight = Math.max(2, 2 * os.availableParallelism());
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const { cls, i, label } = jobs[next++];
      const png = await renderImage(cls, size, Rng.from(key, label * 1_000_000 + i));
      fs.writeFileSync(path.join(dir, cls, `${String(i).padStart(5, "0")}.png`), png);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}
