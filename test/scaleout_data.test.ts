/**
 * `vit data export`: the ImageFolder it writes is read back by vit train's own data code
 * (loadDatasets) to the same images and labels, the synthetic export is deterministic, and images
 * timm cannot read are converted.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import sharp from "sharp";
import { loadConfig } from "../src/config/index.js";
import type { Config } from "../src/config/schema.js";
import type { Dataset } from "../src/data/dataset.js";
import { loadDatasets } from "../src/data/sources.js";
import { UsageError } from "../src/errors.js";
import { exportImageFolder } from "../src/scaleout/data_export.js";
import { runVit } from "./support.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vit-scaleout-data-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function config(yaml: string): Config {
  const file = path.join(tmp, `c${Math.random().toString(36).slice(2)}.yaml`);
  fs.writeFileSync(file, yaml);
  return loadConfig(file);
}

/** What vit train reads from a config: its own loader entry point. */
function load(cfg: Config, cacheDir: string) {
  return loadDatasets(cfg.data, { seed: cfg.train.seed, imgSize: cfg.model.img_size, cacheDir });
}

/** A split as sorted "pixels-hash class" lines: the same images with the same labels, in any order. */
async function content(ds: Dataset): Promise<string[]> {
  const lines = await Promise.all(
    ds.samples.map(async (s) => {
      const { data } = await sharp(s.path).raw().toBuffer({ resolveWithObject: true });
      return `${createHash("sha256").update(data).digest("hex").slice(0, 16)} ${ds.classes[s.label]}`;
    }),
  );
  return lines.toSorted();
}

/** Every file under dir, relative, with its bytes' hash. */
function tree(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => fs.statSync(path.join(dir, f)).isFile())
    .map(
      (f) =>
        `${f} ${createHash("sha256")
          .update(fs.readFileSync(path.join(dir, f)))
          .digest("hex")}`,
    )
    .toSorted();
}

async function roundTrip(cfg: Config, out: string, cacheDir: string): Promise<void> {
  const original = await load(cfg, cacheDir);
  const back = await load(
    { ...cfg, data: { ...cfg.data, train: path.join(out, "train"), val: path.join(out, "val") } },
    cacheDir,
  );
  assert.deepEqual(back.classes, original.classes);
  assert.deepEqual(await content(back.train), await content(original.train));
  assert.deepEqual(await content(back.val), await content(original.val));
  assert.ok(original.val.samples.length > 0);
  assert.equal(fs.readFileSync(path.join(out, "class_map.txt"), "utf8"), `${original.classes.join("\n")}\n`);
}

describe("vit data export", () => {
  const synthetic =
    "model: vit_micro_patch8_32\ndata: {train: synthetic, synthetic_per_class: 6, val_split: 0.2}\ntrain: {seed: 3}\n";

  test("synthetic: vit train reads the export back to the same images and labels (train and the val_split hold-out)", async () => {
    const cfg = config(synthetic);
    const out = path.join(tmp, "synthetic-a");
    const s = await exportImageFolder(cfg, out, { cacheDir: path.join(tmp, "cache-a") });
    assert.equal(s.train + s.val, 60);
    assert.equal(s.linked + s.copied, 60);
    await roundTrip(cfg, out, path.join(tmp, "cache-a"));
  });

  test("synthetic: deterministic (generated twice, in two caches, to the same files; copies equal links)", async () => {
    const cfg = config(synthetic);
    const a = path.join(tmp, "synthetic-a");
    const b = path.join(tmp, "synthetic-b");
    const s = await exportImageFolder(cfg, b, { cacheDir: path.join(tmp, "cache-b"), copy: true });
    assert.equal(s.copied, 60);
    assert.equal(s.linked, 0);
    assert.deepEqual(tree(b), tree(a));
  });

  test("ImageFolder with a val_split: nested files of one name kept apart, a .webp converted to PNG", async () => {
    const root = path.join(tmp, "folder");
    const pixels = (seed: number) =>
      Buffer.from(Array.from({ length: 8 * 8 * 3 }, (_, i) => (i * 37 + seed * 101) % 256));
    let seed = 0;
    for (const cls of ["cat", "dog"]) {
      for (const sub of ["a", "b"]) {
        fs.mkdirSync(path.join(root, cls, sub), { recursive: true });
        for (const name of ["x", "y"]) {
          const img = sharp(pixels(seed++), { raw: { width: 8, height: 8, channels: 3 } });
          await img.png().toFile(path.join(root, cls, sub, `${name}.png`));
        }
      }
    }
    await sharp(pixels(99), { raw: { width: 8, height: 8, channels: 3 } })
      .webp({ lossless: true })
      .toFile(path.join(root, "dog", "z.webp"));
    const cfg = config(`data: {train: ${root}, val_split: 0.25}\n`);
    const out = path.join(tmp, "folder-export");
    const s = await exportImageFolder(cfg, out);
    assert.equal(s.converted, 1);
    assert.equal(s.train + s.val, 9);
    await roundTrip(cfg, out, tmp);
    const files = (fs.readdirSync(out, { recursive: true }) as string[]).filter((f) => f.endsWith(".png"));
    assert.equal(files.length, 9, "no two files written to one name");
  });

  test("vit data export: the folder on stdout, the counts on stderr", async () => {
    const file = path.join(tmp, "cli.yaml");
    fs.writeFileSync(file, synthetic);
    const out = path.join(tmp, "cli export");
    const r = await runVit(["data", "export", "--config", file, "--out", out], {
      cwd: tmp,
      env: { VIT_CACHE_DIR: path.join(tmp, "cache-a") },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${out}\n`);
    assert.match(
      r.stderr,
      /10 classes, 50 train \+ 10 val images \(60 linked, 0 copied, 0 converted to PNG\)/,
    );
    assert.deepEqual(tree(out), tree(path.join(tmp, "synthetic-a")));
  });

  test("an export goes into a new or empty folder only", async () => {
    const cfg = config(synthetic);
    await assert.rejects(
      exportImageFolder(cfg, path.join(tmp, "synthetic-a"), { cacheDir: path.join(tmp, "cache-a") }),
      (e: Error) => e instanceof UsageError && /not empty/.test(e.message),
    );
  });
});
