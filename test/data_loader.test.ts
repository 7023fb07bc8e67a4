/**
 * The threaded loader end to end: resume order, invariance to the number of workers and to the
 * in-memory cache, the bad-file policy as a trainer sees it, and flat memory over epochs.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { DataConfigSchema } from "../src/config/schema.js";
import type { Dataset } from "../src/data/dataset.js";
import { type Batch, DataLoader, type LoaderOptions } from "../src/data/loader.js";
import { openDataset } from "../src/data/sources.js";
import { DataError } from "../src/errors.js";
import { removeTempDirs, tempDir, writeBadFiles, writeImageFolder, writePng } from "./data_fixtures.js";

const loaders: DataLoader[] = [];
after(async () => {
  await Promise.all(loaders.map((l) => l.close()));
  removeTempDirs();
});

function loader(
  ds: Dataset,
  over: Omit<Partial<LoaderOptions>, "data"> & { data?: Record<string, unknown> } = {},
): DataLoader {
  const data = DataConfigSchema.parse({
    crop_pct: 1,
    workers: 2,
    aug: { rand_augment: "rand-m9-mstd0.5", random_erasing: 0.25, scale: [0.3, 1] },
    ...over.data,
  });
  const l = new DataLoader(ds, {
    train: true,
    batchSize: 8,
    imgSize: 16,
    inChans: 3,
    seed: 5,
    ...over,
    data,
  });
  loaders.push(l);
  return l;
}

async function collect(run: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of run) out.push(b);
  return out;
}

const same = (a: Batch[], b: Batch[]) => {
  assert.equal(a.length, b.length);
  a.forEach((x, i) => {
    assert.equal(x.step, b[i].step);
    assert.deepEqual(x.labels, b[i].labels);
    assert.deepEqual(x.indices, b[i].indices);
    assert.deepEqual(x.images, b[i].images);
  });
};

describe("DataLoader", () => {
  const root = tempDir("loader");
  let ds: Dataset;
  let train: DataLoader;
  let evalPlain: DataLoader;

  test("setup: a small ImageFolder", async () => {
    await writeImageFolder(root, { a: 14, b: 13, c: 13 }, [20, 20]);
    ds = openDataset(root);
    assert.equal(ds.samples.length, 40);
    train = loader(ds);
    evalPlain = loader(ds, { train: false, batchSize: 16, data: { workers: 1 } });
  });

  test("batches: shapes, value range, every image once per epoch", async () => {
    assert.equal(train.stepsPerEpoch, 5);
    const batches = await collect(train.epoch(0));
    assert.equal(batches.length, 5);
    for (const b of batches) {
      assert.equal(b.size, 8);
      assert.equal(b.images.length, 8 * 16 * 16 * 3);
      assert.ok(b.images.every((v) => Number.isFinite(v) && v > -6 && v < 6));
    }
    const seen = batches.flatMap((b) => [...b.indices]).sort((x, y) => x - y);
    assert.deepEqual(
      seen,
      Array.from({ length: 40 }, (_, i) => i),
    );
    for (const b of batches)
      for (const [i, idx] of b.indices.entries()) assert.equal(b.labels[i], ds.samples[idx].label);
  });

  test("resume mid-epoch gives the same batches; 1 or 2 workers give the same batches", async () => {
    const full = await collect(train.epoch(1));
    const resumed = await collect(train.epoch(1, 3));
    same(resumed, full.slice(3));
    const single = await collect(loader(ds, { data: { workers: 1, prefetch: 1 } }).epoch(1));
    same(single, full);
    const next = await collect(train.epoch(2));
    assert.notDeepEqual(
      next.map((b) => [...b.indices]),
      full.map((b) => [...b.indices]),
    );
  });

  test("data.cache gives the same batches (images smaller than the working size)", async () => {
    const cached = loader(ds, { data: { cache: true, workers: 1 } });
    for (const epoch of [0, 1]) same(await collect(cached.epoch(epoch)), await collect(train.epoch(epoch)));
    const evalCached = loader(ds, { train: false, batchSize: 16, data: { cache: true, workers: 1 } });
    for (let i = 0; i < 2; i++) same(await collect(evalCached.epoch(0)), await collect(evalPlain.epoch(0)));
  });

  test("eval: file order, last partial batch kept", async () => {
    const batches = await collect(evalPlain.epoch(0));
    assert.deepEqual(
      batches.map((b) => b.size),
      [16, 16, 8],
    );
    assert.deepEqual(
      [...batches[0].indices],
      Array.from({ length: 16 }, (_, i) => i),
    );
  });

  test("leaving an epoch early is clean, and the loader keeps working", async () => {
    for await (const b of train.epoch(0)) if (b.step === 1) break;
    assert.equal((await collect(train.epoch(0))).length, 5);
  });

  test("errors before the first batch", () => {
    assert.throws(
      () => loader(ds, { batchSize: 64 }),
      (e: Error) => e instanceof DataError && /less than one batch/.test(e.message),
    );
    assert.throws(() => loader(ds, { data: { aug: { rand_augment: "rand-z1" } } }), /rand_augment/);
    assert.throws(() => train.epoch(0, 9), RangeError);
  });
});

describe("DataLoader and bad images", () => {
  test("skip: one warning per file, counted every epoch, batch size kept", async () => {
    const root = tempDir("loader-bad");
    const bad = await writeBadFiles(path.join(root, "b"));
    for (let i = 0; i < 17; i++) await writePng(path.join(root, "a", `${i}.png`), 20, 20, i);
    const warnings: string[] = [];
    const l = loader(openDataset(root), { onWarning: (m) => warnings.push(m), data: { workers: 1 } });
    for (const epoch of [0, 1]) {
      const run = l.epoch(epoch);
      const batches = await collect(run);
      assert.ok(batches.every((b) => b.size === 8));
      // 24 images, 3 full batches: all 7 bad files sit in some slot each epoch.
      assert.equal(run.badImages, 7);
    }
    assert.equal(warnings.length, 7);
    for (const name of bad)
      assert.equal(warnings.filter((w) => w.includes(path.join(root, "b", name))).length, 1);
    assert.ok(warnings.every((w) => w.startsWith("skipping bad image ")));
  });

  test("fail: the epoch stops with a DataError naming the file", async () => {
    const root = tempDir("loader-fail");
    for (let i = 0; i < 7; i++) await writePng(path.join(root, "a", `${i}.png`), 20, 20, i);
    fs.mkdirSync(path.join(root, "b"));
    fs.writeFileSync(path.join(root, "b", "broken.jpg"), "not a jpeg");
    const l = loader(openDataset(root), { data: { on_bad_image: "fail", workers: 1 } });
    await assert.rejects(
      collect(l.epoch(0)),
      (e: Error) => e instanceof DataError && e.message.includes(path.join(root, "b", "broken.jpg")),
    );
  });
});

describe("DataLoader memory", () => {
  test("RSS stays flat over epochs of a few thousand images", async () => {
    const root = tempDir("loader-mem");
    const n = 1500;
    for (let i = 0; i < n; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, k) =>
          writePng(path.join(root, `c${(i + k) % 4}`, `${i + k}.png`), 40, 40, i + k),
        ),
      );
    }
    const l = loader(openDataset(root), { batchSize: 50, imgSize: 32, data: { aug: {} } });
    const rss: number[] = [];
    for (let epoch = 0; epoch < 3; epoch++) {
      let images = 0;
      for await (const b of l.epoch(epoch)) images += b.size;
      assert.equal(images, n);
      rss.push(process.memoryUsage().rss);
    }
    // 1500 decoded 40x40 images are 7 MB and a leak of the batches 18 MB per epoch; allow
    // allocator noise but not growth with the epoch.
    const growth = (rss[2] - rss[0]) / 2 ** 20;
    assert.ok(
      growth < 20,
      `RSS grew ${growth.toFixed(1)} MB from epoch 1 to epoch 3 (${rss.map((r) => (r / 2 ** 20).toFixed(0)).join(", ")} MB)`,
    );
  });
});
