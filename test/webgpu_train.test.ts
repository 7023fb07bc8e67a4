/**
 * Training on the webgpu device: a step equals the CPU provider's within 1e-4 relative (loss,
 * gradient norm, every parameter and optimizer slot), and a short run learns an easy task, read
 * back through the eval graph on the same device; a vit teacher runs there too; through the
 * training loop, EMA and checkpoints work and a resumed run ends as an uninterrupted one. Skipped, with the reason, only where no WebGPU
 * adapter exists (.ci/run installs Mesa's software Vulkan driver, so CI has one). Small shapes:
 * the software device compiles a shader per kernel, seconds per session.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import * as ort from "onnxruntime-node";
import {
  type Config,
  ConfigSchema,
  type OptimizerConfig,
  OptimizerConfigSchema,
} from "../src/config/schema.js";
import type { RunDevice } from "../src/engines/onnxruntime/device.js";
import { fixedModel } from "../src/engines/onnxruntime/session.js";
import { type OrtMicroBatch, OrtTrainer } from "../src/engines/onnxruntime/trainer.js";
import { silenceTfjs } from "../src/engines/tfjs/select.js";
import { InterruptedError } from "../src/errors.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { createModel, type VitConfig } from "../src/model/vision_transformer.js";
import { loadRunConfig, type TrainOptions, train } from "../src/train/loop.js";
import { Progress } from "../src/train/progress.js";
import { runPath } from "../src/weights/run_dir.js";
import { assertClose, webgpuSkip } from "./support.js";

// The initial weights come from tfjs's cpu backend, as on the onnxruntime engine.
silenceTfjs();
await tf.setBackend("cpu");

const K = 4;
const SIZE = 16;
const cfg = ConfigSchema.parse({
  model: {
    img_size: SIZE,
    patch_size: 4,
    embed_dim: 24,
    depth: 2,
    num_heads: 2,
    mlp_ratio: 2,
    drop_path_rate: 0.2,
    num_classes: K,
  },
  train: { epochs: 1, batch_size: 8, clip_grad_norm: 1.0, optimizer: { lr: 3e-3 } },
});
const modelCfg: VitConfig = { ...cfg.model, num_classes: K };

function trainer(
  device: RunDevice,
  shapes: Map<string, number[]>,
  optimizer: OptimizerConfig = cfg.train.optimizer,
): OrtTrainer {
  return new OrtTrainer(
    ort,
    {
      model: modelCfg,
      optimizer,
      noWeightDecay: new Set(["pos_embed", "cls_token"]),
      clipGradNorm: cfg.train.clip_grad_norm,
      labelSmoothing: 0.1,
      distill: null,
      threads: 1,
      device,
    },
    shapes,
  );
}

function initialParams(): Map<string, Float32Array> {
  const model = createModel(modelCfg, { seed: 5 });
  const params = new Map([...model.stateDict()].map(([k, t]) => [k, t.data as Float32Array]));
  model.dispose();
  return params;
}

/** Class y: channel y bright (class 3: none), over noise, so a few steps separate the classes. */
function batch(size: number, seed: number): OrtMicroBatch {
  let s = seed;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const images = new Float32Array(size * SIZE * SIZE * 3);
  const labels = Int32Array.from({ length: size }, (_, i) => (i + seed) % K);
  images.forEach((_, i) => {
    const [n, c] = [Math.floor(i / (SIZE * SIZE * 3)), i % 3];
    images[i] = (c === labels[n] ? 1 : -1) + 0.5 * (rand() - 0.5);
  });
  return { images, labels, size, seed };
}

function relDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-12);
}

describe("training on webgpu", { skip: await webgpuSkip() }, () => {
  /**
   * SGD's new weights are the gradients, linearly. AdamW's first step moves each weight by
   * lr g / (|g| + eps), about ±lr whatever |g| is: the key projection's bias has a true gradient of
   * zero (softmax ignores a constant added to every key), so rounding noise picks its sign on each
   * device. There AdamW's moments (g and g², before the division) carry the comparison instead.
   */
  for (const name of ["sgd", "adamw"] as const)
    test(`one ${name} step equals the CPU provider's within 1e-4 relative`, async (t) => {
      const start = initialParams();
      const shapes = new Map([...createModel(modelCfg, { seed: 5 }).paramShapes()]);
      const optimizer = OptimizerConfigSchema.parse({ name });
      const [cpu, gpu] = await Promise.all(
        (["cpu", "webgpu"] as const).map(async (device) => {
          const tr = trainer(device, shapes, optimizer);
          try {
            const r = await tr.step(start, [batch(8, 1)], 1e-3);
            return { ...r, state: tr.exportState() };
          } finally {
            await tr.release();
          }
        }),
      );
      let worst = 0;
      const check = (got: ArrayLike<number>, want: ArrayLike<number>, what: string) => {
        const rel = relDiff(got, want);
        worst = Math.max(worst, rel);
        assert.ok(rel <= 1e-4, `${what}: relative difference ${rel.toExponential(2)} > 1e-4`);
      };
      check([gpu.loss], [cpu.loss], "loss");
      check([gpu.gradNorm], [cpu.gradNorm], "grad norm");
      if (name === "sgd") for (const [p, want] of cpu.params) check(gpu.params.get(p)!, want, p);
      assert.ok(cpu.state.tensors.size > 0);
      for (const [key, want] of cpu.state.tensors) check(gpu.state.tensors.get(key)!.data, want.data, key);
      assert.deepEqual(gpu.state.steps, cpu.state.steps);
      t.diagnostic(`${name}: largest relative difference webgpu vs cpu ${worst.toExponential(2)}`);
    });

  test("a short run learns: loss falls and the eval graph on webgpu classifies a fresh batch", async () => {
    let params = initialParams();
    const tr = trainer("webgpu", new Map([...createModel(modelCfg, { seed: 5 }).paramShapes()]));
    try {
      const losses: number[] = [];
      for (let step = 1; step <= 30; step++) {
        const r = await tr.step(params, [batch(8, step)], 3e-3);
        params = new Map([...params, ...r.params]);
        losses.push(r.loss);
      }
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const [first, last] = [mean(losses.slice(0, 5)), mean(losses.slice(-5))];
      assert.ok(last < 0.5 * first, `loss ${first.toFixed(3)} -> ${last.toFixed(3)}: did not halve`);
      const test = batch(16, 1000);
      const logits = await tr.logits(params, test.images, test.size);
      let correct = 0;
      for (let n = 0; n < test.size; n++) {
        const row = logits.subarray(n * K, (n + 1) * K);
        if (row.indexOf(Math.max(...row)) === test.labels[n]) correct++;
      }
      assert.ok(correct >= 14, `${correct}/16 right after training`);
    } finally {
      await tr.release();
    }
  });

  test("a vit teacher on webgpu answers as on tfjs (distilled: the mean of its heads)", async () => {
    const teacher = createModel({ ...modelCfg, distilled: true }, { seed: 9 });
    const b = batch(4, 3);
    const want = tf.tidy(
      () => teacher.forward(tf.tensor4d(b.images, [4, SIZE, SIZE, 3]), { training: false }) as tf.Tensor2D,
    );
    const onDevice = await fixedModel(ort, teacher.cfg, teacher.stateDict(), 1, "webgpu");
    try {
      assertClose(await onDevice.logits(b.images, 4), want.dataSync(), 1e-5, "teacher logits");
    } finally {
      await onDevice.release();
      want.dispose();
      teacher.dispose();
    }
  });

  test("through the loop: EMA, checkpoints, and a run stopped and resumed ends bit-identical", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vit-webgpu-train-"));
    const config = (name: string) =>
      ConfigSchema.parse({
        name,
        model: { img_size: 16, patch_size: 4, embed_dim: 16, depth: 1, num_heads: 2, drop_path_rate: 0.1 },
        data: { train: "synthetic", synthetic_per_class: 4, val_split: 0.25, workers: 1 },
        train: { epochs: 2, batch_size: 10, ema: { decay: 0.9 }, log_interval: 1 },
        output: { dir: path.join(root, "runs") },
      });
    const run = (opts: Partial<TrainOptions> & { config: Config }) =>
      train({
        backend: "onnxruntime",
        engine: { engine: "onnxruntime", ort, threads: 1, device: "webgpu" },
        progress: new Progress({ write: () => true }),
        cacheDir: path.join(root, "cache"),
        ...opts,
      });
    try {
      const straight = await run({ config: config("straight") });
      const stop = new AbortController();
      await assert.rejects(
        run({ config: config("pieces"), signal: stop.signal, onStep: (step) => step === 4 && stop.abort() }),
        InterruptedError,
      );
      const dir = path.join(root, "runs", "pieces");
      await run({ config: loadRunConfig(dir), resumeDir: dir });
      for (const file of ["last", "ema"] as const) {
        const [a, b] = [straight.runDir, dir].map((d) => readSafetensors(runPath(d, file)).tensors);
        assert.deepEqual([...b.keys()], [...a.keys()]);
        for (const [k, t] of a) assert.deepEqual(b.get(k)!.data, t.data, `${file}: ${k}`);
      }
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
