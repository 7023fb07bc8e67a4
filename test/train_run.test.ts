/**
 * The run folder's pieces: folder naming, metrics.jsonl, checkpoint files, curves.png, the
 * device-side watches and the progress output.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { loadConfig } from "../src/config/index.js";
import { ConfigSchema } from "../src/config/schema.js";
import { curvesSvg, niceTicks, writeCurves } from "../src/train/curves.js";
import { NonFiniteWatch, RunningMeans } from "../src/train/device_stats.js";
import { formatDuration, Progress, type StepStatus } from "../src/train/progress.js";
import { type RunProgress, readRunState, writeRunProgress, writeWeights } from "../src/weights/checkpoint.js";
import { createRunDir, MetricsLog, type MetricsRecord } from "../src/weights/run_dir.js";

await tf.setBackend("cpu");

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "vit-train-run-"));
}

test("createRunDir numbers a name that is taken", () => {
  const out = path.join(tmpDir(), "runs");
  assert.equal(createRunDir(out, "exp"), path.join(out, "exp"));
  assert.equal(createRunDir(out, "exp"), path.join(out, "exp-1"));
  assert.equal(createRunDir(out, "exp"), path.join(out, "exp-2"));
  assert.ok(fs.statSync(path.join(out, "exp-2", "checkpoints")).isDirectory());
});

test("metrics.jsonl: appended lines, a cut-off last line is skipped, truncateAfter drops later steps", () => {
  const log = new MetricsLog(path.join(tmpDir(), "metrics.jsonl"));
  for (const step of [10, 20, 30]) log.append({ kind: "step", step, epoch: 0, "train/loss": 1 / step });
  log.append({ kind: "epoch", step: 30, epoch: 0, "val/top1": 0.5 });
  fs.appendFileSync(log.file, '{"kind": "step", "step": 40, "ep');
  assert.deepEqual(
    log.read().map((r) => [r.kind, r.step]),
    [
      ["step", 10],
      ["step", 20],
      ["step", 30],
      ["epoch", 30],
    ],
  );
  log.truncateAfter(20);
  assert.equal(fs.readFileSync(log.file, "utf8").trim().split("\n").length, 2);
  assert.deepEqual(
    log.read().map((r) => r.step),
    [10, 20],
  );
});

function trainerState(step: number): RunProgress {
  return {
    epoch: 1,
    epochStep: 3,
    step,
    bestTop1: 0.5,
    bestEpoch: 0,
    running: { sums: { loss: 4.5 }, count: 3 },
    optimizer: { name: "adamw", steps: { w: step } },
  };
}

test("checkpoint files round-trip weights, optimizer, EMA and trainer state; a step mismatch is caught", () => {
  const dir = tmpDir();
  const config = ConfigSchema.parse({ name: "x" });
  const weights = new Map([["w", { shape: [2], data: Float32Array.from([1, 2]) }]]);
  const optimizer = {
    tensors: new Map([
      ["exp_avg.w", { shape: [2], data: Float32Array.from([0.1, 0.2]) }],
      ["exp_avg_sq.w", { shape: [2], data: Float32Array.from([0.01, 0.02]) }],
    ]),
    steps: { w: 7 },
  };
  const ema = new Map([["ema.w", { shape: [2], data: Float32Array.from([0.9, 1.9]) }]]);
  const wFile = path.join(dir, "last.safetensors");
  const sFile = path.join(dir, "last.state.safetensors");
  writeRunProgress(sFile, trainerState(7), optimizer, ema);
  writeWeights(wFile, weights, { config, classes: ["a", "b"], epoch: 1, step: 7 });
  const loaded = readRunState(wFile, sFile);
  assert.deepEqual(loaded.classes, ["a", "b"]);
  assert.deepEqual(loaded.config, JSON.parse(JSON.stringify(config)));
  assert.deepEqual(loaded.progress, trainerState(7));
  assert.deepEqual([...loaded.weights.get("w")!.data], [1, 2]);
  assert.deepEqual([...loaded.optimizer.tensors.keys()], ["exp_avg.w", "exp_avg_sq.w"]);
  assert.deepEqual([...loaded.optimizer.tensors.get("exp_avg.w")!.data], [...Float32Array.from([0.1, 0.2])]);
  assert.deepEqual([...loaded.ema.keys()], ["ema.w"]);
  // A save cut between the two files: the state is from a later step than the weights.
  writeRunProgress(sFile, trainerState(9), optimizer, null);
  assert.throws(() => readRunState(wFile, sFile), /from step 9 but .* from step 7/);
});

test("curves.png is a real picture with the three panels", async () => {
  const records: MetricsRecord[] = [];
  for (let e = 0; e < 4; e++) {
    records.push({
      kind: "step",
      step: e * 10 + 5,
      epoch: e,
      epoch_progress: e + 0.5,
      lr: 1e-3 * (e + 1),
      "train/loss": 2,
    });
    records.push({
      kind: "epoch",
      step: (e + 1) * 10,
      epoch: e,
      "train/loss": 2 - e / 2,
      "val/loss": 2.1 - e / 2,
      "val/top1": e / 4,
      "val/top5": 0.5 + e / 8,
    });
  }
  const svg = curvesSvg(records, "demo");
  for (const label of ["Loss", "Accuracy", "Learning rate", "val top-1", "epoch"])
    assert.ok(svg.includes(label), label);
  const file = path.join(tmpDir(), "curves.png");
  await writeCurves(file, records, "demo");
  const meta = await sharp(file).metadata();
  assert.equal(meta.format, "png");
  assert.ok(meta.width! >= 1000 && meta.height! >= 300, `${meta.width}x${meta.height}`);
  const stats = await sharp(file).stats();
  assert.ok(stats.channels[0].min < 100, "something dark was drawn");
  // No epoch yet: still a valid picture.
  await writeCurves(file, [], "empty");
});

test("niceTicks picks 1-2-5 steps", () => {
  assert.deepEqual(niceTicks(0, 100), [0, 20, 40, 60, 80, 100]);
  assert.deepEqual(niceTicks(0.3, 2.6), [0.5, 1, 1.5, 2, 2.5]);
});

test("RunningMeans averages on the device and survives export/import", () => {
  const m = new RunningMeans();
  for (const v of [1, 2, 6]) tf.tidy(() => m.add({ loss: tf.scalar(v), extra: tf.scalar(v * 10) }));
  assert.deepEqual(m.means(), { loss: 3, extra: 30 });
  const saved = m.export();
  m.reset();
  m.import(saved);
  tf.tidy(() => m.add({ loss: tf.scalar(3), extra: tf.scalar(30) }));
  assert.deepEqual(m.means(), { loss: 3, extra: 30 });
  assert.equal(m.steps, 4);
  m.reset();
});

test("NonFiniteWatch keeps the first bad step", () => {
  const w = new NonFiniteWatch();
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    w.record(0, tf.scalar(1), tf.scalar(2));
    w.record(1, tf.scalar(1), tf.scalar(3));
  });
  assert.equal(w.read(), null);
  tf.tidy(() => {
    w.record(2, tf.scalar(Number.NaN), tf.scalar(2));
    w.record(3, tf.scalar(1), tf.scalar(Number.POSITIVE_INFINITY));
  });
  assert.equal(w.read(), 2);
  assert.equal(tf.memory().numTensors, before);
  w.dispose();
});

function fakeStream(isTTY: boolean) {
  const chunks: string[] = [];
  return { out: { isTTY, columns: 120, write: (s: string) => chunks.push(s) }, chunks };
}

const STATUS: StepStatus = {
  epoch: 2,
  epochs: 10,
  step: 45,
  steps: 90,
  imagesPerSec: 312.4,
  lr: 4.1e-4,
  loss: 1.23456,
  etaSec: 83,
};

test("progress: plain lines without a TTY, a redrawn bar with one", () => {
  const plain = fakeStream(false);
  const p = new Progress(plain.out);
  p.status(STATUS);
  p.logStep(STATUS, 225);
  p.print("epoch 3/10 done");
  assert.deepEqual(plain.chunks, [
    "epoch 3/10  step 45/90 (225)  loss 1.2346  lr 4.10e-4  312.4 img/s  ETA 1:23\n",
    "epoch 3/10 done\n",
  ]);
  const tty = fakeStream(true);
  const bar = new Progress(tty.out);
  bar.logStep(STATUS, 225);
  bar.status(STATUS);
  bar.print("done");
  assert.equal(tty.chunks.length, 3);
  assert.ok(tty.chunks[0].startsWith("\r\u001b[2K"), "the bar redraws its line");
  assert.match(
    tty.chunks[0].slice(5),
    /^epoch 3\/10 \[#+\.+\] 45\/90 {2}312 img\/s {2}loss 1\.2346 {2}lr 4\.10e-4 {2}ETA 1:23$/,
  );
  assert.deepEqual(tty.chunks.slice(1), ["\n", "done\n"]);
  assert.equal(formatDuration(3725), "1:02:05");
});

test("every config in configs/ resolves, and each says in its header how to run it", () => {
  const files = fs.readdirSync("configs").filter((f) => f.endsWith(".yaml"));
  for (const f of [
    "quickstart.yaml",
    "deit_tiny_patch16_224.yaml",
    "vit_small_finetune.yaml",
    "vit_micro_gray28.yaml",
  ]) {
    assert.ok(files.includes(f), `configs/${f} is missing`);
  }
  for (const f of files) {
    const file = path.join("configs", f);
    const cfg = loadConfig(file);
    assert.match(
      fs.readFileSync(file, "utf8"),
      new RegExp(`^#[^]*npx vit train --config configs/${f}`),
      file,
    );
    assert.equal(cfg.data.mean.length, cfg.model.in_chans, file);
  }
  const deit = loadConfig("configs/deit_tiny_patch16_224.yaml");
  const effectiveBatch = deit.train.batch_size * deit.train.accum_steps;
  assert.equal(deit.train.optimizer.lr, (5e-4 * effectiveBatch) / 512, "DeiT's lr = 5e-4 * batch / 512");
  assert.deepEqual(
    [
      deit.train.optimizer.weight_decay,
      deit.train.schedule.warmup_epochs,
      deit.train.schedule.min_lr,
      deit.train.label_smoothing,
    ],
    [0.05, 5, 1e-5, 0.1],
  );
  assert.deepEqual(
    [
      deit.data.aug.mixup,
      deit.data.aug.cutmix,
      deit.data.aug.rand_augment,
      deit.data.aug.random_erasing,
      deit.model.drop_path_rate,
    ],
    [0.8, 1.0, "rand-m9-mstd0.5", 0.25, 0.1],
  );
  assert.equal(loadConfig("configs/vit_micro_gray28.yaml").model.in_chans, 1);
  assert.match(
    fs.readFileSync("configs/quickstart.yaml", "utf8"),
    /^# Measured: .*\d+(\.\d+)?% val top-1 .* in \d+ min/m,
  );
});
