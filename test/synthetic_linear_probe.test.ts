/**
 * The built-in dataset is not trivial: a linear classifier on raw pixels (softmax regression that fits
 * the quickstart's 3,600 training images) stays far below the >= 90% the quickstart's ViT reaches,
 * because the class is the outline while colour, position, size and rotation are random.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { openDataset } from "../src/data/sources.js";
import { stratifiedSplit } from "../src/data/split.js";
import { ensureSynthetic, SYNTHETIC_CLASSES } from "../src/data/synthetic.js";
import { initWasm } from "../src/engines/tfjs/wasm_threads.js";
import { removeTempDirs, tempDir } from "./data_fixtures.js";

after(removeTempDirs);

const SIZE = 32;

async function pixels(files: string[]): Promise<tf.Tensor2D> {
  const rows = await Promise.all(files.map((f) => sharp(f).removeAlpha().raw().toBuffer()));
  const flat = new Float32Array(rows.length * SIZE * SIZE * 3);
  for (const [i, r] of rows.entries())
    flat.set(
      Float32Array.from(r, (v) => v / 255),
      i * r.length,
    );
  return tf.tensor2d(flat, [rows.length, SIZE * SIZE * 3]);
}

test("a linear model on raw pixels stays far below the quickstart ViT on the synthetic classes", async () => {
  await initWasm({ threads: 1 });
  const root = await ensureSynthetic({ perClass: 400, size: SIZE, cacheDir: tempDir("probe") });
  const ds = openDataset(root);
  const split = stratifiedSplit(ds, 0.1, 0);
  const [train, val] = [split.train.samples, split.val.samples];
  const [xTrain, xVal] = await Promise.all([
    pixels(train.map((s) => s.path)),
    pixels(val.map((s) => s.path)),
  ]);
  const yTrain = tf.oneHot(
    train.map((s) => s.label),
    SYNTHETIC_CLASSES.length,
  );

  // Features standardized with the training statistics, as any linear baseline would be.
  const [mean, std] = tf.tidy(() => {
    const { mean, variance } = tf.moments(xTrain, 0);
    return [mean, tf.sqrt(tf.add(variance, 1e-6))];
  });
  const standardize = (x: tf.Tensor) => tf.tidy(() => tf.div(tf.sub(x, mean), std));
  const [sTrain, sVal] = [standardize(xTrain), standardize(xVal)];
  const w = tf.variable(tf.zeros([SIZE * SIZE * 3, SYNTHETIC_CLASSES.length]), true, "w");
  const b = tf.variable(tf.zeros([SYNTHETIC_CLASSES.length]), true, "b");
  const logits = (x: tf.Tensor) => tf.add(tf.matMul(x, w), b);
  // The cross-entropy gradient written out, X^T (softmax - Y) / N, with X^T formed once: tfjs's own
  // matMul gradient takes wasm's slow transposed-product path.
  const sTrainT = tf.transpose(sTrain);
  const optimizer = tf.train.adam(1e-3);
  for (let step = 0; step < 300; step++) {
    tf.tidy(() => {
      const residual = tf.div(tf.sub(tf.softmax(logits(sTrain)), yTrain), train.length);
      optimizer.applyGradients({ w: tf.matMul(sTrainT, residual), b: tf.sum(residual, 0) });
    });
  }
  const accuracy = (x: tf.Tensor, labels: number[]) =>
    tf.tidy(() => {
      const predicted = tf.argMax(logits(x), 1).dataSync();
      return labels.filter((label, i) => predicted[i] === label).length / labels.length;
    });
  const trainAcc = accuracy(
    sTrain,
    train.map((s) => s.label),
  );
  const valAcc = accuracy(
    sVal,
    val.map((s) => s.label),
  );
  // It did fit what it was given (so the low val score is the data, not a failed optimization)...
  assert.ok(trainAcc > 0.9, `train accuracy ${trainAcc}`);
  // ...and generalizes far less than the ViT's >= 90% (it scored 51.5% when this was written).
  assert.ok(valAcc < 0.6, `val accuracy ${valAcc}`);
  tf.dispose([xTrain, xVal, yTrain, mean, std, sTrain, sTrainT, sVal, w, b]);
  optimizer.dispose();
});
