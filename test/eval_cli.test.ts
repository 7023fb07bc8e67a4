/**
 * `vit eval`, `vit predict` and `vit attention` end to end, as child processes, on a tiny model
 * built here and images made here. Expected numbers come from running the same weights in this
 * process on pixels decoded here (the images are exactly img_size with crop_pct 1, so the eval
 * transform is the identity and only normalisation remains).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { figureLayout } from "../src/attention/figure.js";
import { type Config, resolveConfig } from "../src/config/index.js";
import { parseCsv } from "../src/data/csv_manifest.js";
import { confusionLayout } from "../src/eval/confusion_plot.js";
import { writeSafetensors } from "../src/io/safetensors.js";
import { addBatch, emptyTally, summarize } from "../src/metrics/classification.js";
import { createModel, type VisionTransformer } from "../src/model/vision_transformer.js";
import { writeWeights } from "../src/weights/checkpoint.js";
import { pattern, writePng } from "./data_fixtures.js";
import { runVit } from "./support.js";

const _ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CLASSES = ["blue", "green", "red"];
const S = 16;

const vit = (args: string[], backend = "cpu") =>
  runVit([...args, "--backend", backend, "--threads", "1"], { cwd: dir });

let dir: string;
const rel = (...p: string[]) => path.join(...p);

function tinyConfig(distilled: boolean): Config {
  return resolveConfig(
    {
      name: "tiny",
      model: {
        img_size: S,
        patch_size: 4,
        embed_dim: 32,
        depth: 2,
        num_heads: 2,
        mlp_ratio: 2,
        drop_path_rate: 0,
        distilled,
      },
      data: {
        train: path.join(dir, "data", "train"),
        val: path.join(dir, "data", "val"),
        mean: [0.5, 0.5, 0.5],
        std: [0.5, 0.5, 0.5],
        crop_pct: 1,
        workers: 1,
      },
      train: { batch_size: 4 },
      output: { dir: path.join(dir, "runs") },
    },
    { source: "test" },
  );
}

/**
 * Random blocks with nearest-centroid heads on the training images' features
 * (w_c = s * mu_c, b_c = -s * |mu_c|^2 / 2), so predictions vary and mostly follow the labels.
 */
async function tinyModel(
  cfg: Config,
  seed: number,
  train: string[],
  trainLabels: number[],
): Promise<VisionTransformer> {
  const model = createModel({ ...cfg.model, num_classes: CLASSES.length }, { seed });
  const x = await batchOf(train);
  const f = tf.tidy(() => model.forwardHead(model.forwardFeatures(x), { preLogits: true }) as tf.Tensor2D);
  const [n, d] = f.shape;
  const feats = f.dataSync();
  tf.dispose([x, f]);
  const k = CLASSES.length;
  const w = new Float32Array(k * d);
  const b = new Float32Array(k);
  for (let c = 0; c < k; c++) {
    const members = trainLabels.flatMap((l, i) => (l === c ? [i] : []));
    for (let j = 0; j < d; j++) {
      w[c * d + j] = (20 * members.reduce((a, i) => a + feats[i * d + j], 0)) / members.length;
    }
    b[c] = -w.subarray(c * d, (c + 1) * d).reduce((a, v) => a + v * v, 0) / 40;
  }
  assert.equal(n, train.length);
  const sd = model.stateDict();
  for (const head of ["head", "head_dist"]) {
    if (!sd.has(`${head}.weight`)) continue;
    sd.set(`${head}.weight`, { shape: [k, d], data: w });
    sd.set(`${head}.bias`, { shape: [k], data: b });
  }
  model.loadStateDict(sd);
  return model;
}

/** A patterned image with one colour channel raised: blue, green or red by class. */
async function tintedPng(file: string, w: number, h: number, seed: number, label: number): Promise<void> {
  const px = pattern(w, h, seed);
  const channel = 2 - label; // CLASSES are blue, green, red
  for (let i = channel; i < px.length; i += 3) px[i] = Math.min(255, px[i] + 90);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(file);
}

async function pixels(file: string): Promise<Float32Array> {
  const { data } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return Float32Array.from(data, (v) => (v / 255 - 0.5) / 0.5);
}

/** Normalised `[N, S, S, 3]` batch of image files, decoded here. */
async function batchOf(files: string[]): Promise<tf.Tensor4D> {
  const data = (await Promise.all(files.map(pixels))).flatMap((a) => Array.from(a));
  return tf.tensor4d(data, [files.length, S, S, 3]);
}

/** Logits of the files through `model`, computed here: `[N, K]` rows, and for distilled models both heads. */
async function expected(model: VisionTransformer, files: string[]) {
  const x = await batchOf(files);
  const out = model.forward(x, { training: false }) as tf.Tensor2D;
  const logits = Array.from(out.dataSync());
  out.dispose();
  let heads: { head: number[]; dist: number[] } | null = null;
  if (model.cfg.distilled) {
    // Every dropout and drop-path rate is 0, so training mode only exposes the two heads.
    const both = model.forward(x, { training: true }) as { logits: tf.Tensor2D; distLogits: tf.Tensor2D };
    heads = { head: Array.from(both.logits.dataSync()), dist: Array.from(both.distLogits.dataSync()) };
    tf.dispose([both.logits, both.distLogits]);
  }
  x.dispose();
  return { logits, heads };
}

const valFiles: string[] = [];
const labels: number[] = [];
let model: VisionTransformer;
let distilledModel: VisionTransformer;

before(async () => {
  await tf.setBackend("cpu");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-eval-cli-"));
  const files: Record<string, string[]> = { train: [], val: [] };
  const fileLabels: Record<string, number[]> = { train: [], val: [] };
  let seed = 0;
  for (const split of ["train", "val"]) {
    for (const [label, c] of CLASSES.entries()) {
      for (let i = 0; i < 4; i++) {
        const file = path.join(dir, "data", split, c, `${c}${i}.png`);
        await tintedPng(file, S, S, seed++, label);
        files[split].push(file);
        fileLabels[split].push(label);
      }
    }
  }
  valFiles.push(...files.val);
  labels.push(...fileLabels.val);
  for (const [name, distilled] of [
    ["tiny", false],
    ["deit", true],
  ] as const) {
    const cfg = tinyConfig(distilled);
    const m = await tinyModel(cfg, distilled ? 2 : 1, files.train, fileLabels.train);
    fs.mkdirSync(path.join(dir, "runs", name, "checkpoints"), { recursive: true });
    writeWeights(path.join(dir, "runs", name, "checkpoints", "best.safetensors"), m.stateDict(), {
      config: cfg,
      classes: CLASSES,
      epoch: 0,
      step: 0,
    });
    if (distilled) distilledModel = m;
    else model = m;
  }
  // A plain timm file: weights only, no config or classes.
  writeSafetensors(path.join(dir, "plain.safetensors"), model.stateDict());
  fs.writeFileSync(
    path.join(dir, "tiny.yaml"),
    `model: {img_size: ${S}, patch_size: 4, embed_dim: 32, depth: 2, num_heads: 2, mlp_ratio: 2}\ndata: {mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], crop_pct: 1}\n`,
  );
  fs.writeFileSync(path.join(dir, "labels.txt"), "blue\ngreen\nred\n");
  // Inputs for predict: good images at two depths, and bad ones.
  await writePng(path.join(dir, "in", "a.png"), S, S, 100);
  await writePng(path.join(dir, "in", "deep", "b.png"), S, S, 101);
  await writePng(path.join(dir, "in", "big.png"), 40, 24, 102); // resized + cropped by the eval transform
  fs.writeFileSync(path.join(dir, "in", "corrupt.png"), "not a png at all");
  fs.writeFileSync(path.join(dir, "in", "empty.jpg"), "");
});

after(() => {
  model?.dispose();
  distilledModel?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

const close = (a: number, b: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} != ${b}`);

describe("vit eval / predict / attention (child processes)", { concurrency: 2 }, () => {
  test("eval --run --json: the documented JSON shape with numbers equal to a run in this process", async () => {
    const r = await vit(["eval", "--run", rel("runs", "tiny"), "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(j).slice(0, 5), ["top1", "top5", "loss", "images", "per_class"]);
    const { logits } = await expected(model, valFiles);
    const t = emptyTally(3);
    addBatch(t, logits, labels);
    const s = summarize(t);
    assert.equal(j.images, 12);
    close(j.top1, s.top1, 1e-6, "top1");
    close(j.loss, s.loss, 1e-4, "loss");
    assert.deepEqual(j.confusion, s.confusion);
    assert.deepEqual(Object.keys(j.per_class), CLASSES);
    assert.equal(j.per_class.red.support, 4);
    close(j.macro_avg.f1, s.macro.f1, 1e-6, "macro f1");
    const predicted = [0, 1, 2].filter((c) => s.confusion.some((row) => row[c] > 0));
    assert.ok(predicted.length >= 2, "predictions vary between images");
    assert.match(r.stderr, /evaluating runs\/tiny\/checkpoints\/best\.safetensors on 12 images/);
    const png = path.join(dir, "runs", "tiny", "confusion.png");
    assert.equal(j.confusion_png, path.join("runs", "tiny", "confusion.png"));
    const meta = await sharp(png).metadata();
    assert.equal(meta.format, "png");
    assert.equal(meta.width, confusionLayout(CLASSES).width);
    assert.equal(meta.height, confusionLayout(CLASSES).height);
  });

  test("eval prints the human report: tables and the text confusion matrix", async () => {
    const r = await vit([
      "eval",
      "--checkpoint",
      rel("runs", "tiny", "checkpoints", "best.safetensors"),
      "--data",
      rel("data", "train"),
      "--batch-size",
      "5",
      "--confusion",
      "c.png",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^images 12 {2}top-1 \d+\.\d\d% {2}top-5 100\.00% {2}loss \d+\.\d{4}$/m);
    assert.match(r.stdout, /^class +precision +recall +f1-score +support$/m);
    assert.match(r.stdout, /^weighted avg +[\d.]+ +[\d.]+ +[\d.]+ +12$/m);
    assert.match(r.stdout, /^true \\ pred 0 1 2$/m);
    assert.match(r.stdout, /^2 red +\d \d \d$/m);
    assert.ok(fs.existsSync(path.join(dir, "c.png")));
  });

  test("eval of a distilled model reports the class head, the distillation head and their mean", async () => {
    const r = await vit(["eval", "--run", rel("runs", "deit"), "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    const { logits, heads } = await expected(distilledModel, valFiles);
    const score = (l: number[]) => {
      const t = emptyTally(3);
      addBatch(t, l, labels);
      return summarize(t);
    };
    assert.deepEqual(Object.keys(j.heads), ["head", "head_dist", "mean"]);
    close(j.heads.head.loss, score(heads!.head).loss, 1e-4, "head loss");
    close(j.heads.head_dist.loss, score(heads!.dist).loss, 1e-4, "head_dist loss");
    close(j.heads.mean.loss, score(logits).loss, 1e-4, "mean loss");
    assert.equal(j.heads.mean.top1, j.top1);
    assert.notEqual(j.heads.head.loss, j.heads.head_dist.loss);
  });

  test("eval and predict on onnxruntime give wasm's results: metrics, each head, top-k, bad images", async () => {
    const evalArgs = ["eval", "--run", rel("runs", "deit"), "--json", "--batch-size", "5"];
    const predictArgs = ["predict", "in", "--run", rel("runs", "tiny"), "--topk", "3", "--json"];
    const [ortEval, wasmEval, ortPredict, wasmPredict] = await Promise.all([
      vit(evalArgs, "onnxruntime"),
      vit(evalArgs, "wasm"),
      vit(predictArgs, "onnxruntime"),
      vit(predictArgs, "wasm"),
    ]);
    assert.equal(ortEval.code, 0, ortEval.stderr);
    assert.equal(wasmEval.code, 0, wasmEval.stderr);
    const [o, w] = [JSON.parse(ortEval.stdout), JSON.parse(wasmEval.stdout)];
    assert.deepEqual(Object.keys(o.heads), ["head", "head_dist", "mean"]);
    for (const head of ["head", "head_dist", "mean"]) {
      assert.deepEqual(o.heads[head].confusion, w.heads[head].confusion, `${head} confusion`);
      assert.equal(o.heads[head].top1, w.heads[head].top1, `${head} top1`);
      close(o.heads[head].loss, w.heads[head].loss, 1e-5, `${head} loss`);
    }
    assert.notEqual(o.heads.head.loss, o.heads.head_dist.loss);

    assert.equal(ortPredict.code, 1, "the bad images fail on both engines");
    assert.equal(ortPredict.stderr.split("\n").filter((l) => l.startsWith("error: ")).length, 2);
    const [op, wp] = [JSON.parse(ortPredict.stdout), JSON.parse(wasmPredict.stdout)];
    assert.equal(op.length, 5);
    assert.deepEqual(
      op.map((r: { image: string; error?: string }) => [r.image, r.error]),
      wp.map((r: { image: string; error?: string }) => [r.image, r.error]),
    );
    for (const [i, r] of op.entries()) {
      assert.deepEqual(
        r.predictions.map((p: { index: number }) => p.index),
        wp[i].predictions.map((p: { index: number }) => p.index),
        r.image,
      );
      for (const [k, p] of r.predictions.entries()) close(p.prob, wp[i].predictions[k].prob, 1e-5, r.image);
    }
  });

  test("eval --data with other class names lists the unknown and the missing ones", async () => {
    fs.mkdirSync(path.join(dir, "other", "cat"), { recursive: true });
    await writePng(path.join(dir, "other", "cat", "x.png"), S, S, 7);
    await writePng(path.join(dir, "other", "red", "y.png"), S, S, 8);
    const r = await vit(["eval", "--run", rel("runs", "tiny"), "--data", "other"]);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr.trim(),
      "other: class names differ from the model's: unknown cat; missing blue, green",
    );
  });

  test("predict DIR --json: every image of the folder, probabilities equal to this process's", async () => {
    const r = await vit([
      "predict",
      "in/deep",
      "in/a.png",
      "--run",
      rel("runs", "tiny"),
      "--topk",
      "2",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(
      out.map((o: { image: string }) => o.image),
      [rel("in", "deep", "b.png"), rel("in", "a.png")],
    );
    const { logits } = await expected(model, [
      path.join(dir, "in", "deep", "b.png"),
      path.join(dir, "in", "a.png"),
    ]);
    for (const [i, o] of out.entries()) {
      const row = logits.slice(i * 3, i * 3 + 3);
      const max = Math.max(...row);
      const z = row.reduce((a, v) => a + Math.exp(v - max), 0);
      const probs = row.map((v) => Math.exp(v - max) / z);
      const order = [0, 1, 2].sort((a, b) => probs[b] - probs[a]);
      assert.equal(o.predictions.length, 2);
      for (const [k, p] of o.predictions.entries()) {
        assert.equal(p.index, order[k]);
        assert.equal(p.label, CLASSES[order[k]]);
        close(p.prob, probs[order[k]], 1e-5, `prob ${o.image}`);
      }
      assert.ok(o.predictions[0].prob >= o.predictions[1].prob);
    }
  });

  test("predict with good and bad images: answers for the good, an error line per bad one, exit 1", async () => {
    const r = await vit([
      "predict",
      "in",
      "missing.png",
      "--run",
      rel("runs", "tiny"),
      "--topk",
      "3",
      "--csv",
      "--batch-size",
      "2",
    ]);
    assert.equal(r.code, 1);
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(
      lines[0],
      "image,label_1,index_1,prob_1,label_2,index_2,prob_2,label_3,index_3,prob_3,error",
    );
    const rows = parseCsv(r.stdout)
      .slice(1)
      .map((rec) => rec.fields);
    assert.deepEqual(
      rows.map((c) => c[0]),
      ["in/a.png", "in/big.png", "in/corrupt.png", "in/deep/b.png", "in/empty.jpg", "missing.png"],
    );
    for (const row of rows) {
      const bad = /corrupt|empty|missing/.test(row[0]);
      assert.equal(row.length, 11);
      assert.equal(row[10] === "", !bad, row.join(","));
      if (!bad) assert.ok(CLASSES.includes(row[1]));
    }
    assert.match(r.stderr, /^error: in\/corrupt\.png: .+$/m);
    assert.match(r.stderr, /^error: in\/empty\.jpg: empty file \(0 bytes\)$/m);
    assert.match(r.stderr, /^error: missing\.png: .+$/m);
    assert.match(r.stderr, /^3 of 6 images could not be read$/m);
  });

  test("predict with a quoted ** pattern prints an aligned table", async () => {
    const r = await vit(["predict", "in/**/*.png", "--run", rel("runs", "tiny"), "--topk", "1"]);
    assert.equal(r.code, 1, "in/corrupt.png matches the pattern and fails");
    const lines = r.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^image +top-1$/);
    assert.deepEqual(
      lines.slice(1).map((l) => l.split(/ +/)[0]),
      ["in/a.png", "in/big.png", "in/deep/b.png"],
    );
    for (const l of lines.slice(1)) assert.match(l, /^in\/\S+ +(blue|green|red) +\d+\.\d\d%$/);
    const column = lines[0].indexOf("top-1");
    for (const l of lines.slice(1))
      assert.equal(l.search(/(blue|green|red)/), column, "labels line up under top-1");
  });

  test("predict with a plain weights file needs --model/--config; indices without --labels", async () => {
    const none = await vit(["predict", "in/a.png", "--checkpoint", "plain.safetensors"]);
    assert.equal(none.code, 2);
    assert.match(
      none.stderr,
      /plain\.safetensors has no config in its metadata .*--model PRESET or --config FILE/,
    );
    const indices = await vit([
      "predict",
      "in/a.png",
      "--checkpoint",
      "plain.safetensors",
      "--config",
      "tiny.yaml",
      "--json",
    ]);
    assert.equal(indices.code, 0, indices.stderr);
    const withNames = await vit([
      "predict",
      "in/a.png",
      "--checkpoint",
      "plain.safetensors",
      "--config",
      "tiny.yaml",
      "--labels",
      "labels.txt",
      "--json",
    ]);
    assert.equal(withNames.code, 0, withNames.stderr);
    const [a] = JSON.parse(indices.stdout);
    const [b] = JSON.parse(withNames.stdout);
    assert.deepEqual(
      a.predictions.map((p: { label: string }) => p.label),
      a.predictions.map((p: { index: number }) => String(p.index)),
    );
    assert.deepEqual(
      b.predictions.map((p: { label: string }) => p.label),
      b.predictions.map((p: { index: number }) => CLASSES[p.index]),
    );
    assert.deepEqual(
      a.predictions.map((p: { prob: number }) => p.prob),
      b.predictions.map((p: { prob: number }) => p.prob),
    );
  });

  test("attention writes one PNG of the figure's size", async () => {
    const r = await vit(["attention", "in/a.png", "--run", rel("runs", "tiny"), "--out", "attn.png"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "attn.png\n");
    const meta = await sharp(path.join(dir, "attn.png")).metadata();
    const lay = figureLayout(2);
    assert.equal(meta.format, "png");
    assert.equal(meta.width, lay.width);
    assert.equal(meta.height, lay.height);
    const bad = await vit(["attention", "in/corrupt.png", "--run", rel("runs", "tiny")]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^in\/corrupt\.png: /);
  });

  test("usage errors exit 2 with one line", async () => {
    const both = await vit(["eval", "--run", "runs/tiny", "--checkpoint", "plain.safetensors"]);
    assert.equal(both.code, 2);
    assert.equal(both.stderr, "give --run DIR or --checkpoint FILE, not both\n");
    const fmt = await vit(["predict", "in/a.png", "--run", "runs/tiny", "--json", "--csv"]);
    assert.equal(fmt.code, 2);
    assert.equal(fmt.stderr, "give --json or --csv, not both\n");
    const ema = await vit(["eval", "--run", "runs/tiny", "--ema"]);
    assert.equal(ema.code, 2);
    assert.match(
      ema.stderr,
      /no runs\/tiny\/checkpoints\/ema\.safetensors \(the run was trained without train\.ema\)/,
    );
    const attention = await vit(["attention", "in/a.png", "--run", "runs/tiny"], "onnxruntime");
    assert.equal(attention.code, 2);
    assert.equal(
      attention.stderr,
      "backend onnxruntime: vit attention reads the attention maps out of the tfjs model: give --backend auto, tensorflow, wasm or cpu\n",
    );
  });
});
