/**
 * A fixed-seed short run (the quickstart's model and data, smaller) on tfjs wasm and on
 * onnxruntime: the same seeds give the same data, masks and initial weights, and the two engines'
 * final val top-1 end within 2 points of each other (their float rounding differs, so the runs
 * drift apart; they must not learn differently).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import * as ort from "onnxruntime-node";
import { type Config, ConfigSchema } from "../src/config/schema.js";
import { initWasm } from "../src/engines/tfjs/wasm_threads.js";
import { train } from "../src/train/loop.js";
import { Progress } from "../src/train/progress.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "vit-ort-accuracy-"));
const quiet = () => new Progress({ write: () => true });

function config(name: string): Config {
  return ConfigSchema.parse({
    name,
    model: { preset: "vit_micro_patch8_32", drop_path_rate: 0.1 },
    data: {
      train: "synthetic",
      synthetic_per_class: 150,
      val_split: 0.2,
      workers: 1,
      aug: { scale: [0.9, 1.0], ratio: [0.9, 1.1], hflip: 0.5 },
    },
    train: {
      epochs: 4,
      batch_size: 16,
      optimizer: { name: "adamw", lr: 1e-3, weight_decay: 0.05 },
      schedule: { name: "cosine", warmup_epochs: 1, warmup_lr: 1e-5, min_lr: 1e-5 },
      seed: 0,
    },
    output: { dir: path.join(root, "runs") },
  });
}

test("a short fixed-seed run reaches the same accuracy on tfjs wasm and onnxruntime (within 2 points)", async (t) => {
  await initWasm({ threads: 1 });
  const cacheDir = path.join(root, "cache");
  const wasm = await train({ config: config("wasm"), backend: "wasm", progress: quiet(), cacheDir });
  await tf.setBackend("cpu");
  const onnx = await train({
    config: config("onnxruntime"),
    backend: "onnxruntime",
    engine: { engine: "onnxruntime", ort, threads: 1 },
    progress: quiet(),
    cacheDir,
  });
  const [a, b] = [wasm.val!.top1, onnx.val!.top1];
  t.diagnostic(`val top-1: wasm ${(a * 100).toFixed(1)}%, onnxruntime ${(b * 100).toFixed(1)}%`);
  assert.ok(a > 0.4 && b > 0.4, `the run learns (10 classes): ${a}, ${b}`);
  assert.ok(Math.abs(a - b) <= 0.02, `wasm ${a} vs onnxruntime ${b}`);
});
