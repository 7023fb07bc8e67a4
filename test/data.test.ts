/**
 * The data pipeline without threads: sources, geometry, transforms, colour ops, RandAugment,
 * normalisation, random erasing, mixup/cutmix, the split, the synthetic dataset and bad files.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import sharp, { type Sharp } from "sharp";
import { DataConfigSchema } from "../src/config/schema.js";
import { BatchBuilder, epochOrder, type LoaderSpec } from "../src/data/batch.js";
import { BadImageError, openImage } from "../src/data/decode.js";
import { evalResizeCrop, randomResizedCrop, roundHalfEven } from "../src/data/geometry.js";
import { mixupCutmix, mixupOptions } from "../src/data/mixup.js";
import { Normalizer, randomErase } from "../src/data/normalize.js";
import * as ops from "../src/data/pixel_ops.js";
import { chooseOps, parseRandAugment, pilAffine, randAugment } from "../src/data/rand_augment.js";
import { Rng } from "../src/data/random.js";
import { loadDatasets, openDataset } from "../src/data/sources.js";
import { stratifiedSplit, valCount } from "../src/data/split.js";
import { ensureSynthetic, SYNTHETIC_CLASSES } from "../src/data/synthetic.js";
import { evalImage, trainImage, transformOptions } from "../src/data/transforms.js";
import { ConfigError, DataError } from "../src/errors.js";
import {
  pattern,
  removeTempDirs,
  tempDir,
  writeBadFiles,
  writeImageFolder,
  writePng,
} from "./data_fixtures.js";

after(removeTempDirs);

const config = (data: Record<string, unknown> = {}) => DataConfigSchema.parse(data);

/** PIL's bicubic resample (a = -0.5, support scaled when shrinking), the reference for sharp's kernel. */
function pilBicubic(src: Uint8Array, w: number, h: number, ow: number, oh: number): Uint8Array {
  const cubic = (x: number) => {
    const a = -0.5;
    const t = Math.abs(x);
    if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
    if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
    return 0;
  };
  const pass = (
    input: Uint8Array,
    n: number,
    m: number,
    lines: number,
    at: (line: number, i: number) => number,
  ) => {
    const scale = n / m;
    const fs = Math.max(scale, 1);
    const out = new Uint8Array(lines * m * 3);
    for (let o = 0; o < m; o++) {
      const center = (o + 0.5) * scale;
      const lo = Math.max(0, Math.trunc(center - 2 * fs + 0.5));
      const hi = Math.min(n, Math.trunc(center + 2 * fs + 0.5));
      const wts: number[] = [];
      for (let j = lo; j < hi; j++) wts.push(cubic((j - center + 0.5) / fs));
      const sum = wts.reduce((s, v) => s + v, 0);
      for (let line = 0; line < lines; line++) {
        for (let c = 0; c < 3; c++) {
          let acc = 0;
          for (let j = lo; j < hi; j++) acc += (wts[j - lo] / sum) * input[at(line, j) * 3 + c];
          out[(line * m + o) * 3 + c] = Math.max(0, Math.min(255, Math.round(acc)));
        }
      }
    }
    return out;
  };
  // Horizontal pass into [h, ow], then vertical into [oh, ow] (stored transposed, then fixed).
  const horiz = pass(src, w, ow, h, (y, x) => y * w + x);
  const vertT = pass(horiz, h, oh, ow, (x, y) => y * ow + x);
  const out = new Uint8Array(ow * oh * 3);
  for (let x = 0; x < ow; x++)
    for (let y = 0; y < oh; y++)
      out.set(vertT.subarray((x * oh + y) * 3, (x * oh + y) * 3 + 3), (y * ow + x) * 3);
  return out;
}

describe("geometry", () => {
  test("round half to even, as Python", () => {
    assert.deepEqual([0.5, 1.5, 2.5, -2.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -2, 2, 3]);
  });

  test("random-resized-crop stays inside the image, within scale and ratio", () => {
    const rng = new Rng(1);
    for (let i = 0; i < 500; i++) {
      const b = randomResizedCrop(500, 375, [0.08, 1], [3 / 4, 4 / 3], rng);
      assert.ok(b.left >= 0 && b.top >= 0 && b.left + b.width <= 500 && b.top + b.height <= 375);
      const area = (b.width * b.height) / (500 * 375);
      assert.ok(area > 0.075 && area < 1.01, `area ${area}`);
      const r = b.width / b.height;
      assert.ok(r > 0.7 && r < 1.4, `ratio ${r}`);
    }
  });

  test("random-resized-crop falls back to timm's centre crop after 10 failed tries", () => {
    // No box of 90-100% of the area fits a 100x10 strip with ratio <= 4/3: centre crop 13x10.
    const b = randomResizedCrop(100, 10, [0.9, 1], [3 / 4, 4 / 3], new Rng(3));
    assert.deepEqual(b, { left: 43, top: 0, width: 13, height: 10 });
    const tall = randomResizedCrop(10, 100, [0.9, 1], [3 / 4, 4 / 3], new Rng(3));
    assert.deepEqual(tall, { left: 0, top: 43, width: 10, height: 13 });
  });

  test("eval resize + centre crop follows torchvision to the pixel", () => {
    assert.deepEqual(evalResizeCrop(500, 375, 224, 0.875), {
      width: 341,
      height: 256,
      crop: { left: 58, top: 16, width: 224, height: 224 },
    });
    // floor(224 / 0.9) = 248; 500 -> trunc(248 * 500 / 375) = 330.
    assert.deepEqual(evalResizeCrop(375, 500, 224, 0.9).crop, { left: 12, top: 53, width: 224, height: 224 });
    assert.deepEqual(evalResizeCrop(40, 40, 32, 1), {
      width: 32,
      height: 32,
      crop: { left: 0, top: 0, width: 32, height: 32 },
    });
  });
});

describe("transforms", () => {
  const dir = tempDir("data-tf");
  const known = path.join(dir, "known.png");

  test("eval transform on a known image is the exact centre crop", async () => {
    const px = await writePng(known, 40, 50, 5);
    // floor(32 / 0.8) = 40 = the shorter side: no resize; crop offsets (4, 9).
    const out = await evalImage(await openImage(known), transformOptions(config({ crop_pct: 0.8 }), 32));
    assert.equal(out.length, 32 * 32 * 3);
    for (let y = 0; y < 32; y++) {
      const row = out.subarray(y * 32 * 3, (y + 1) * 32 * 3);
      assert.deepEqual(row, px.subarray(((y + 9) * 40 + 4) * 3, ((y + 9) * 40 + 36) * 3));
    }
  });

  test("bicubic shrink matches PIL's bicubic", async () => {
    const px = pattern(150, 120, 2);
    const file = path.join(dir, "shrink.png");
    await sharp(px, { raw: { width: 150, height: 120, channels: 3 } })
      .png()
      .toFile(file);
    // crop_pct 1: shorter side 120 -> 64, longer 150 -> trunc(64 * 150 / 120) = 80; crop left = 8.
    const o = transformOptions(config({ crop_pct: 1 }), 64);
    const out = await evalImage(await openImage(file), o);
    const ref = pilBicubic(px, 150, 120, 80, 64);
    let mad = 0;
    let max = 0;
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        for (let c = 0; c < 3; c++) {
          const d = Math.abs(out[(y * 64 + x) * 3 + c] - ref[(y * 80 + x + 8) * 3 + c]);
          mad += d;
          max = Math.max(max, d);
        }
      }
    }
    mad /= 64 * 64 * 3;
    assert.ok(mad < 0.6 && max <= 4, `mean abs diff ${mad}, max ${max}`);
  });

  test("train transform: shape, determinism under a seed, sensitivity to it", async () => {
    const img = await openImage(known);
    const o = transformOptions(
      config({ aug: { rand_augment: "rand-m9-mstd0.5", color_jitter: 0.4, hflip: 0.5 } }),
      24,
    );
    const a = await trainImage(img, o, new Rng(7));
    const b = await trainImage(img, o, new Rng(7));
    const c = await trainImage(img, o, new Rng(8));
    assert.equal(a.length, 24 * 24 * 3);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  test("horizontal flip mirrors the crop", async () => {
    const img = await openImage(known);
    const base = config({ crop_pct: 1, aug: { scale: [1, 1], ratio: [0.8, 0.8], hflip: 0 } });
    const plain = await trainImage(img, transformOptions(base, 20), new Rng(1));
    const flipped = await trainImage(
      img,
      transformOptions({ ...base, aug: { ...base.aug, hflip: 1 } }, 20),
      new Rng(1),
    );
    for (let y = 0; y < 20; y++) {
      for (let x = 0; x < 20; x++) {
        const a = (y * 20 + x) * 3;
        const b = (y * 20 + 19 - x) * 3;
        assert.deepEqual(flipped.subarray(a, a + 3), plain.subarray(b, b + 3));
      }
    }
  });

  test("every input format ends as 8-bit sRGB, EXIF orientation applied", async () => {
    const px = pattern(12, 8);
    const raw = { raw: { width: 12, height: 8, channels: 3 as const } };
    const files: Record<string, Sharp> = {
      "cmyk.jpg": sharp(px, raw).toColourspace("cmyk").jpeg(),
      "rgb16.png": sharp(px, raw).toColourspace("rgb16").png(),
      "grey16.png": sharp(px, raw).toColourspace("grey16").png(),
      "palette.png": sharp(px, raw).png({ palette: true }),
      "alpha.png": sharp(px, raw).ensureAlpha(0.5).png(),
      "anim.gif": sharp(px, raw).gif(),
      "x.webp": sharp(px, raw).webp(),
      "x.tiff": sharp(px, raw).tiff(),
      "rotated.jpg": sharp(px, raw).jpeg().withMetadata({ orientation: 6 }),
    };
    const o = transformOptions(config({ crop_pct: 1 }), 8);
    for (const [name, pipeline] of Object.entries(files)) {
      const file = path.join(dir, name);
      await pipeline.toFile(file);
      const img = await openImage(file);
      assert.deepEqual([img.width, img.height], name === "rotated.jpg" ? [8, 12] : [12, 8], name);
      const out = await evalImage(img, o);
      assert.equal(out.length, 8 * 8 * 3, name);
    }
    // Orientation 6 shows the stored image turned 90 degrees clockwise: stored columns left of
    // x = 6 (red) become the displayed rows above y = 6.
    const halves = Buffer.alloc(12 * 8 * 3);
    for (let i = 0; i < 12 * 8; i++) halves[i * 3 + (i % 12 < 6 ? 0 : 2)] = 255;
    await sharp(halves, raw)
      .jpeg({ quality: 95 })
      .withMetadata({ orientation: 6 })
      .toFile(path.join(dir, "halves.jpg"));
    const out = await evalImage(await openImage(path.join(dir, "halves.jpg")), o);
    // Crop rows 2..9 of the 8x12 display: rows 0-3 red, rows 4-7 blue.
    assert.ok(out[0] > 200 && out[2] < 50, `top-left ${out.subarray(0, 3)}`);
    assert.ok(
      out[7 * 8 * 3] < 50 && out[7 * 8 * 3 + 2] > 200,
      `bottom-left ${out.subarray(7 * 24, 7 * 24 + 3)}`,
    );
  });
});

describe("colour ops (PIL arithmetic)", () => {
  const px = () => Uint8Array.from(pattern(8, 8, 3));

  test("enhance factors: 1 is identity, 0 is the degenerate image", () => {
    for (const f of [ops.brightness, ops.contrast, ops.color]) {
      const a = px();
      f(a, 1);
      assert.deepEqual(a, px());
    }
    const dark = px();
    ops.brightness(dark, 0);
    assert.ok(dark.every((v) => v === 0));
    const grey = px();
    ops.color(grey, 0);
    for (let i = 0; i < grey.length; i += 3) assert.ok(grey[i] === grey[i + 1] && grey[i] === grey[i + 2]);
    const flat = px();
    ops.contrast(flat, 0);
    assert.ok(flat.every((v) => v === flat[0]));
  });

  test("luma, posterize, solarize, invert, autocontrast, equalize", () => {
    assert.equal(ops.luma(255, 255, 255), 255);
    assert.equal(ops.luma(100, 100, 100), 100);
    const p = Uint8Array.of(0, 37, 200, 255);
    ops.posterize(p, 2);
    assert.deepEqual(p, Uint8Array.of(0, 0, 192, 192));
    const s = Uint8Array.of(10, 127, 128, 250);
    ops.solarize(s, 128);
    assert.deepEqual(s, Uint8Array.of(10, 127, 127, 5));
    const inv = Uint8Array.of(0, 1, 255);
    ops.invert(inv);
    assert.deepEqual(inv, Uint8Array.of(255, 254, 0));
    const ac = Uint8Array.of(50, 60, 70, 135, 145, 155);
    ops.autoContrast(ac);
    assert.deepEqual(ac, Uint8Array.of(0, 0, 0, 255, 255, 255));
    // 1020 pixels, four grey levels 255 times each: step = 765 // 255 = 3.
    const eq = new Uint8Array(3 * 1020);
    for (let i = 0; i < eq.length; i++) eq[i] = 100 + (((i / 3) | 0) % 4);
    ops.equalize(eq);
    assert.deepEqual(
      [...new Set(eq)].sort((a, b) => a - b),
      [0, 85, 170, 255],
    );
  });
});

describe("RandAugment", () => {
  test("parses timm's config strings", () => {
    assert.deepEqual(parseRandAugment("rand-m9-mstd0.5"), {
      magnitude: 9,
      numLayers: 2,
      magnitudeStd: 0.5,
      magnitudeMax: 10,
      increasing: false,
      weighted: false,
    });
    const s = parseRandAugment("rand-m7-n3-mstd101-inc1-w0");
    assert.equal(s.numLayers, 3);
    assert.equal(s.magnitudeStd, Number.POSITIVE_INFINITY);
    assert.ok(s.increasing && s.weighted);
    assert.throws(() => parseRandAugment("rand-x5"), ConfigError);
    assert.throws(
      () => transformOptions(config({ aug: { rand_augment: "rand-q3" } }), 32),
      /unknown section "q3"/,
    );
  });

  test("op choice: n ops with replacement, or weighted without", () => {
    const spec = parseRandAugment("rand-m9-n3");
    assert.equal(chooseOps(spec, new Rng(1)).length, 3);
    const weighted = chooseOps(parseRandAugment("rand-m9-n4-w0"), new Rng(2));
    assert.equal(new Set(weighted).size, 4);
    assert.ok(!weighted.includes("Invert") && !weighted.includes("Posterize"));
  });

  test("geometric ops map pixels exactly as PIL's affine transform", async () => {
    const S = 16;
    const px = pattern(S, S, 4);
    const ctx = { size: S, fill: [1, 2, 3] as [number, number, number], interpolator: "bicubic" as const };
    // PIL rotate(90) about the centre: out[y][x] = in[x][S-1-y].
    const rot = await pilAffine(px, [0, -1, S, 1, 0, 0], ctx);
    // Translate by 5: out[y][x] = in[y][x+5], the uncovered strip is filled.
    const tr = await pilAffine(px, [1, 0, 5, 0, 1, 0], ctx);
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        for (let c = 0; c < 3; c++) {
          assert.equal(rot[(y * S + x) * 3 + c], px[(x * S + S - 1 - y) * 3 + c]);
          assert.equal(tr[(y * S + x) * 3 + c], x + 5 < S ? px[(y * S + x + 5) * 3 + c] : ctx.fill[c]);
        }
      }
    }
  });

  test("an image through RandAugment keeps its size and is deterministic", async () => {
    const px = pattern(24, 24, 1);
    const ctx = {
      size: 24,
      fill: [124, 116, 104] as [number, number, number],
      interpolator: "bilinear" as const,
    };
    const spec = parseRandAugment("rand-m9-n4-mstd0.5");
    const a = await randAugment(Buffer.from(px), spec, ctx, new Rng(11));
    const b = await randAugment(Buffer.from(px), spec, ctx, new Rng(11));
    const c = await randAugment(Buffer.from(px), spec, ctx, new Rng(12));
    assert.equal(a.length, px.length);
    assert.deepEqual(a, b);
    // Four ops at magnitude ~9 change the image, and another draw changes it differently.
    assert.notDeepEqual(Buffer.from(a), Buffer.from(px));
    assert.notDeepEqual(Buffer.from(a), Buffer.from(c));
  });
});

describe("normalize and random erasing", () => {
  test("values are (v/255 - mean)/std; greyscale takes PIL's luma", () => {
    const n = new Normalizer(3, [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]);
    const out = new Float32Array(6);
    n.into(out, 0, Uint8Array.of(0, 255, 51, 255, 0, 102));
    const want = [-2.5, 2.4, -0.2, 2.5, -1.6, 0.2];
    for (const [i, w] of want.entries()) assert.ok(Math.abs(out[i] - w) < 1e-6, `${out[i]} vs ${w}`);
    const g = new Normalizer(1, [0.5], [0.5]);
    const og = new Float32Array(2);
    g.into(og, 0, Uint8Array.of(255, 255, 255, 0, 0, 0));
    assert.deepEqual(Array.from(og), [1, -1]);
  });

  test("random erasing: probability 1 erases a box of 2-33% of the image, 0 never", () => {
    for (let seed = 0; seed < 20; seed++) {
      const img = new Float32Array(32 * 32 * 3).fill(7);
      randomErase(img, 0, 32, 3, 1, new Rng(seed));
      const changed = img.filter((v) => v !== 7).length / 3;
      assert.ok(changed >= 0.015 * 1024 && changed <= 0.34 * 1024, `${changed} pixels`);
    }
    const img = new Float32Array(32 * 32 * 3).fill(7);
    randomErase(img, 0, 32, 3, 0, new Rng(1));
    assert.ok(img.every((v) => v === 7));
  });
});

describe("mixup / cutmix", () => {
  const batchOf = (n: number, H: number, W: number) => {
    const images = new Float32Array(n * H * W * 3);
    for (let i = 0; i < n; i++) images.fill(i + 1, i * H * W * 3, (i + 1) * H * W * 3);
    return { images, labels: Int32Array.from({ length: n }, (_, i) => i % 5), size: n };
  };
  const aug = (o: Record<string, unknown>) => config({ aug: o }).aug;

  test("mixup: images and targets mixed by the same lambda, rows sum to 1", () => {
    const o = mixupOptions(aug({ mixup: 0.8 }), 0.1, 5)!;
    const b = batchOf(4, 2, 2);
    const r = mixupCutmix(b, [2, 2, 3], o, new Rng(3));
    assert.equal(r.mode, "mixup");
    assert.ok(r.lam > 0 && r.lam < 1);
    // Image 0 = lam * 1 + (1 - lam) * 4.
    assert.ok(Math.abs(b.images[0] - (r.lam + (1 - r.lam) * 4)) < 1e-5);
    for (let i = 0; i < 4; i++) {
      const row = r.targets.subarray(i * 5, i * 5 + 5);
      assert.ok(Math.abs(row.reduce((s, v) => s + v, 0) - 1) < 1e-6);
    }
    // Label 0 for image 0 gets lam*(1 - 0.1) + 0.1/5 (image 3 has label 3).
    assert.ok(Math.abs(r.targets[0] - (r.lam * 0.9 + 0.02)) < 1e-6);
  });

  test("cutmix: lambda is 1 - box area, the box holds the reversed batch", () => {
    const o = mixupOptions(aug({ cutmix: 1.0 }), 0, 5)!;
    for (let seed = 0; seed < 10; seed++) {
      const b = batchOf(3, 10, 8);
      const r = mixupCutmix(b, [10, 8, 3], o, new Rng(seed));
      assert.equal(r.mode, "cutmix");
      const { top, bottom, left, right } = r.box!;
      assert.ok(Math.abs(r.lam - (1 - ((bottom - top) * (right - left)) / 80)) < 1e-12);
      let swapped = 0;
      for (let p = 0; p < 80; p++) if (b.images[p * 3] === 3) swapped++;
      assert.equal(swapped, (bottom - top) * (right - left));
      for (let i = 0; i < 3; i++) {
        const row = r.targets.subarray(i * 5, i * 5 + 5);
        assert.ok(Math.abs(row.reduce((s, v) => s + v, 0) - 1) < 1e-6);
      }
    }
  });

  test("switch between the two, and prob 0 leaves the batch alone with smoothed targets", () => {
    const o = mixupOptions(aug({ mixup: 0.8, cutmix: 1.0, mixup_switch_prob: 0.5 }), 0.1, 5)!;
    const modes = new Set(
      Array.from({ length: 40 }, (_, s) => mixupCutmix(batchOf(2, 4, 4), [4, 4, 3], o, new Rng(s)).mode),
    );
    assert.deepEqual([...modes].sort(), ["cutmix", "mixup"]);
    const off = mixupOptions(aug({ mixup: 0.8, mixup_prob: 0 }), 0.1, 5)!;
    const b = batchOf(2, 4, 4);
    const r = mixupCutmix(b, [4, 4, 3], off, new Rng(1));
    assert.equal(r.mode, "none");
    assert.equal(r.lam, 1);
    assert.ok(b.images.slice(0, 48).every((v) => v === 1));
    assert.ok(Math.abs(r.targets[0] - 0.92) < 1e-6 && Math.abs(r.targets[1] - 0.02) < 1e-6);
    assert.equal(mixupOptions(aug({}), 0.1, 5), null);
  });
});

describe("sources", () => {
  test("ImageFolder: sorted classes, nested folders, hidden and non-image files ignored", async () => {
    const root = tempDir("folder");
    await writeImageFolder(root, { dog: 2, cat: 3 });
    await writePng(path.join(root, "cat", "more", "deep.png"), 8, 8);
    fs.writeFileSync(path.join(root, "cat", ".hidden.png"), "x");
    fs.writeFileSync(path.join(root, "cat", "notes.txt"), "x");
    fs.mkdirSync(path.join(root, ".git"));
    const ds = openDataset(root);
    assert.deepEqual(ds.classes, ["cat", "dog"]);
    assert.equal(ds.samples.length, 6);
    assert.deepEqual(
      ds.samples.map((s) => s.label),
      [0, 0, 0, 0, 1, 1],
    );
    assert.ok(ds.samples.some((s) => s.path.endsWith(path.join("more", "deep.png"))));
  });

  test("ImageFolder errors before training", async () => {
    const root = tempDir("folder-bad");
    assert.throws(() => openDataset(path.join(root, "missing")), /no such folder/);
    assert.throws(() => openDataset(root), /empty/);
    await writeImageFolder(root, { a: 1 });
    fs.mkdirSync(path.join(root, "b"));
    assert.throws(
      () => openDataset(root),
      (e: Error) => e instanceof DataError && /class "b" has no images/.test(e.message),
    );
    const val = tempDir("folder-val");
    await writeImageFolder(val, { zebra: 1 });
    assert.throws(
      () => openDataset(val, { classes: ["a", "b"] }),
      /class "zebra" is not one of the known classes/,
    );
  });

  test("CSV manifest: relative paths, quoted fields, any column order", async () => {
    const dir = tempDir("csv");
    await writePng(path.join(dir, "img", "a,1.png"), 8, 8);
    await writePng(path.join(dir, "img", "b.png"), 8, 8);
    fs.writeFileSync(
      path.join(dir, "m.csv"),
      'label,path\r\n"big cat","img/a,1.png"\r\nmouse,img/b.png\r\n\r\n',
    );
    const ds = openDataset(path.join(dir, "m.csv"));
    assert.deepEqual(ds.classes, ["big cat", "mouse"]);
    assert.equal(ds.samples[0].path, path.join(dir, "img", "a,1.png"));
  });

  test("CSV errors name the file and line", async () => {
    const dir = tempDir("csv-bad");
    await writePng(path.join(dir, "x.png"), 8, 8);
    const write = (name: string, text: string) => {
      fs.writeFileSync(path.join(dir, name), text);
      return path.join(dir, name);
    };
    assert.throws(
      () => openDataset(write("col.csv", "path,label,weight\nx.png,a,1\n")),
      /col\.csv:1: unknown column "weight"/,
    );
    assert.throws(() => openDataset(write("miss.csv", "path\nx.png\n")), /missing column "label"/);
    assert.throws(
      () => openDataset(write("lab.csv", "path,label\nx.png,zebra\n"), { classes: ["a"] }),
      /lab\.csv:2: label "zebra"/,
    );
    assert.throws(
      () => openDataset(write("nofile.csv", "path,label\nx.png,a\ny.png,a\n")),
      /nofile\.csv:3: no such file y\.png/,
    );
    assert.throws(() => openDataset(write("empty.csv", "path,label\n")), /no rows/);
  });

  test("stratified split: per-class counts, disjoint, seeded", () => {
    const sizes = [10, 5, 1, 2, 40];
    const samples = sizes.flatMap((n, label) =>
      Array.from({ length: n }, (_, i) => ({ path: `${label}/${i}`, label })),
    );
    const ds = { source: "x", classes: ["a", "b", "c", "d", "e"], samples };
    const { train, val } = stratifiedSplit(ds, 0.2, 0);
    const count = (d: typeof train, l: number) => d.samples.filter((s) => s.label === l).length;
    assert.deepEqual(
      sizes.map((_, l) => count(val, l)),
      [2, 1, 0, 1, 8],
    );
    assert.deepEqual(
      sizes.map((n) => valCount(n, 0.2)),
      [2, 1, 0, 1, 8],
    );
    assert.equal(train.samples.length + val.samples.length, samples.length);
    const valPaths = new Set(val.samples.map((s) => s.path));
    assert.ok(train.samples.every((s) => !valPaths.has(s.path)));
    assert.deepEqual(stratifiedSplit(ds, 0.2, 0).val.samples, val.samples);
    assert.notDeepEqual(stratifiedSplit(ds, 0.2, 1).val.samples, val.samples);
  });

  test("loadDatasets: val folder, num_classes check", async () => {
    const root = tempDir("load");
    await writeImageFolder(path.join(root, "train"), { a: 3, b: 3 });
    await writeImageFolder(path.join(root, "val"), { b: 1 });
    const data = config({ train: path.join(root, "train"), val: path.join(root, "val") });
    const ds = await loadDatasets(data, { seed: 0, imgSize: 32 });
    assert.deepEqual(ds.classes, ["a", "b"]);
    assert.deepEqual(
      ds.val.samples.map((s) => s.label),
      [1],
    );
    await assert.rejects(
      loadDatasets(data, { seed: 0, imgSize: 32, numClasses: 3 }),
      /has 2 classes but model.num_classes is 3/,
    );
  });
});

describe("synthetic dataset", () => {
  test("deterministic by seed, cached behind a marker, regenerated when interrupted", async () => {
    const a = await ensureSynthetic({ perClass: 2, size: 20, cacheDir: tempDir("syn-a") });
    const b = await ensureSynthetic({ perClass: 2, size: 20, cacheDir: tempDir("syn-b") });
    const c = await ensureSynthetic({ perClass: 2, size: 20, seed: 1, cacheDir: tempDir("syn-c") });
    const ds = openDataset(a);
    assert.deepEqual(ds.classes, SYNTHETIC_CLASSES);
    assert.equal(ds.classes.length, 10);
    assert.equal(ds.samples.length, 20);
    const read = (root: string) => openDataset(root).samples.map((s) => fs.readFileSync(s.path));
    assert.deepEqual(read(a), read(b));
    assert.notDeepEqual(read(a), read(c));
    const meta = await sharp(ds.samples[0].path).metadata();
    assert.deepEqual([meta.width, meta.height, meta.format], [20, 20, "png"]);
    // Reused: the same folder comes back and nothing is rewritten.
    const mtime = fs.statSync(ds.samples[0].path).mtimeMs;
    assert.equal(await ensureSynthetic({ perClass: 2, size: 20, cacheDir: path.dirname(a) }), a);
    assert.equal(fs.statSync(ds.samples[0].path).mtimeMs, mtime);
    // A folder without the marker (an interrupted run) is generated again.
    fs.rmSync(path.join(a, ".complete"));
    fs.rmSync(path.join(a, "star"), { recursive: true });
    await ensureSynthetic({ perClass: 2, size: 20, cacheDir: path.dirname(a) });
    assert.deepEqual(read(a), read(b));
  });

  test("loadDatasets generates it at 1.25x the image size and holds out val_split", async () => {
    const data = config({ train: "synthetic", synthetic_per_class: 10, val_split: 0.2 });
    const ds = await loadDatasets(data, { seed: 0, imgSize: 16, cacheDir: tempDir("syn-load") });
    assert.equal(ds.train.samples.length, 80);
    assert.equal(ds.val.samples.length, 20);
    const meta = await sharp(ds.train.samples[0].path).metadata();
    assert.equal(meta.width, 20);
  });
});

describe("bad images", () => {
  const spec = (over: Partial<LoaderSpec> & { onBad?: "skip" | "fail" } = {}): LoaderSpec => ({
    train: true,
    batchSize: 4,
    dropLast: true,
    imgSize: 16,
    inChans: 3,
    seed: 0,
    ...over,
    data: config({ crop_pct: 1, on_bad_image: over.onBad ?? "skip" }),
  });

  test("each bad file is a BadImageError with a reason", async () => {
    const dir = tempDir("bad");
    const names = await writeBadFiles(dir);
    const reasons: Record<string, RegExp> = {
      "zero-byte.jpg": /empty file/,
      "text.jpg": /unsupported image format/,
      "bitmap.png": /unsupported image format/,
      "one-pixel.png": /1x1 is too small/,
      "bomb.png": /pixel limit/,
    };
    const o = transformOptions(config(), 16);
    for (const name of names) {
      const file = path.join(dir, name);
      const err = await openImage(file)
        .then((img) => evalImage(img, o))
        .then(
          () => null,
          (e: unknown) => e,
        );
      assert.ok(err instanceof BadImageError, `${name} was accepted`);
      assert.equal(err.file, file);
      if (reasons[name]) assert.match(err.reason, reasons[name], name);
    }
  });

  test("skip: training batches keep their size; each bad file is reported once per epoch", async () => {
    const dir = tempDir("bad-skip");
    const bad = await writeBadFiles(path.join(dir, "b"));
    for (let i = 0; i < 9; i++) await writePng(path.join(dir, "a", `${i}.png`), 20, 20, i);
    const ds = openDataset(dir);
    const builder = new BatchBuilder(
      ds.samples.map((s) => s.path),
      Int32Array.from(ds.samples, (s) => s.label),
      spec(),
    );
    for (const epoch of [0, 1]) {
      const reported: string[] = [];
      for (let step = 0; step < builder.steps; step++) {
        const b = await builder.build(epoch, step);
        assert.equal(b.size, 4);
        assert.equal(b.images.length, 4 * 16 * 16 * 3);
        assert.ok(
          b.labels.every((l) => l === 0),
          "a bad slot got a good image of class a",
        );
        reported.push(...b.bad.map((x) => path.basename(x.file)));
      }
      // 16 images, 4 steps of 4: every bad file is in some slot exactly once.
      assert.deepEqual(reported.sort(), [...bad].sort());
    }
  });

  test("skip in evaluation drops the image; fail stops with a DataError naming the file", async () => {
    const dir = tempDir("bad-eval");
    await writeBadFiles(path.join(dir, "b"));
    for (let i = 0; i < 3; i++) await writePng(path.join(dir, "a", `${i}.png`), 20, 20, i);
    const ds = openDataset(dir);
    const paths = ds.samples.map((s) => s.path);
    const labels = Int32Array.from(ds.samples, (s) => s.label);
    const evalBuilder = new BatchBuilder(
      paths,
      labels,
      spec({ train: false, batchSize: 10, dropLast: false }),
    );
    const b = await evalBuilder.build(0, 0);
    assert.equal(b.size, 3);
    assert.equal(b.images.length, 3 * 16 * 16 * 3);
    assert.equal(b.bad.length, 7);
    const failing = new BatchBuilder(paths, labels, spec({ onBad: "fail", batchSize: 10 }));
    await assert.rejects(
      failing.build(0, 0),
      (e: Error) => e instanceof DataError && e.message.includes(path.join(dir, "b")),
    );
  });

  test("the epoch order is a seeded permutation", () => {
    const a = epochOrder(50, 3, 1, true);
    assert.deepEqual(
      [...a].sort((x, y) => x - y),
      Array.from({ length: 50 }, (_, i) => i),
    );
    assert.deepEqual(a, epochOrder(50, 3, 1, true));
    assert.notDeepEqual(a, epochOrder(50, 3, 2, true));
    assert.notDeepEqual(a, epochOrder(50, 4, 1, true));
    assert.deepEqual(epochOrder(5, 3, 1, false), Int32Array.of(0, 1, 2, 3, 4));
  });
});
