// Data loader throughput: `tsx bench/data.ts [--images N] [--img-size S] [--epochs E]`.
// Writes N 500x375 JPEGs (photo-like: smooth gradients, shapes and noise) to a temp folder, then
// times the training loader (decode + random-resized-crop + flip + normalize, and again with
// RandAugment and random erasing) and the eval loader at S px, with 1 and 2 worker threads.
// One JSON line per case on stdout: images/s over the timed epochs (a first epoch warms the
// workers up and is not timed). Compare with a training step's images/s (issue: the loader
// should deliver at least 4x what vit_tiny_patch16_224 trains at).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { DataConfigSchema } from "../src/config/schema.js";
import { DataLoader } from "../src/data/loader.js";
import { openDataset } from "../src/data/sources.js";

const { values: args } = parseArgs({
  options: {
    images: { type: "string", default: "256" },
    "img-size": { type: "string", default: "224" },
    epochs: { type: "string", default: "2" },
  },
});
const count = Number(args.images);
const imgSize = Number(args["img-size"]);
const epochs = Number(args.epochs);

async function writeJpegs(dir: string): Promise<void> {
  const jobs = Array.from({ length: count }, async (_, i) => {
    const hue = (i * 47) % 360;
    const svg =
      `<svg xmlns="http://www.w3.org/2000/svg" width="500" height="375">` +
      `<defs><linearGradient id="g" gradientTransform="rotate(${i % 180})">` +
      `<stop offset="0" stop-color="hsl(${hue},60%,35%)"/><stop offset="1" stop-color="hsl(${(hue + 120) % 360},50%,70%)"/>` +
      `</linearGradient></defs><rect width="500" height="375" fill="url(#g)"/>` +
      `<circle cx="${100 + (i % 300)}" cy="${80 + ((i * 7) % 200)}" r="${40 + (i % 60)}" fill="hsl(${(hue + 200) % 360},70%,50%)"/>` +
      `<rect x="${(i * 13) % 300}" y="${(i * 29) % 250}" width="120" height="90" fill="hsl(${(hue + 60) % 360},80%,60%)" transform="rotate(${i % 45})"/></svg>`;
    const noise = await sharp({
      create: {
        width: 500,
        height: 375,
        channels: 3,
        background: "#000",
        noise: { type: "gaussian", mean: 0, sigma: 12 },
      },
    })
      .png()
      .toBuffer();
    const file = path.join(dir, `c${i % 10}`, `${i}.jpg`);
    await sharp(Buffer.from(svg))
      .composite([{ input: noise, blend: "add" }])
      .jpeg({ quality: 90 })
      .toFile(file);
  });
  for (let c = 0; c < 10; c++) fs.mkdirSync(path.join(dir, `c${c}`), { recursive: true });
  await Promise.all(jobs);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-bench-data-"));
try {
  await writeJpegs(dir);
  const ds = openDataset(dir);
  const cases = [
    { name: "train", train: true, aug: {} },
    {
      name: "train+randaug+erase",
      train: true,
      aug: { rand_augment: "rand-m9-mstd0.5", random_erasing: 0.25 },
    },
    { name: "eval", train: false, aug: {} },
  ];
  for (const c of cases) {
    for (const workers of [1, 2]) {
      const data = DataConfigSchema.parse({ workers, prefetch: 2, aug: c.aug });
      const loader = new DataLoader(ds, {
        train: c.train,
        batchSize: 32,
        data,
        imgSize,
        inChans: 3,
        seed: 0,
      });
      let images = 0;
      let t0 = 0;
      for (let e = 0; e <= epochs; e++) {
        if (e === 1) t0 = performance.now();
        for await (const b of loader.epoch(e)) if (e > 0) images += b.size;
      }
      const seconds = (performance.now() - t0) / 1000;
      await loader.close();
      const line = {
        bench: "data",
        case: c.name,
        workers,
        img_size: imgSize,
        source: "500x375 jpeg",
        images,
        seconds: Math.round(seconds * 1000) / 1000,
        images_per_s: Math.round((images / seconds) * 10) / 10,
        cpus: os.availableParallelism(),
      };
      console.log(JSON.stringify(line));
    }
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
