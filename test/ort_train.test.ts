/**
 * Training on onnxruntime end to end: the step graph's gradients against timm's on the parity
 * fixture that carries them; a run stopped and resumed ends bit-identical to an uninterrupted one;
 * memory stays flat over many steps.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import * as ort from "onnxruntime-node";
import { type Config, ConfigSchema, ModelConfigSchema } from "../src/config/schema.js";
import { buildTrainGraph, IO } from "../src/engines/onnxruntime/train_graph.js";
import { OrtTrainer } from "../src/engines/onnxruntime/trainer.js";
import { InterruptedError } from "../src/errors.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { createModel } from "../src/model/vision_transformer.js";
import { loadRunConfig, type TrainOptions, train } from "../src/train/loop.js";
import { Progress } from "../src/train/progress.js";
import { runPath } from "../src/weights/run_dir.js";
import { assertClose, FIXTURES, tinyTrainConfig } from "./support.js";

await tf.setBackend("cpu");

test("gradients of timm's cross-entropy match the fixture's (vit_cls)", async () => {
  const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, "vit_cls.json"), "utf8"));
  const kw = spec.timm_kwargs;
  const model = {
    ...ModelConfigSchema.parse({
      img_size: kw.img_size,
      patch_size: kw.patch_size,
      in_chans: kw.in_chans,
      embed_dim: kw.embed_dim,
      depth: kw.depth,
      num_heads: kw.num_heads,
      mlp_ratio: kw.mlp_ratio,
      drop_path_rate: 0,
    }),
    num_classes: kw.num_classes,
  };
  const [B, C, H, W] = spec.input.shape;
  const nchw = new Float32Array(
    new Uint8Array(fs.readFileSync(path.join(FIXTURES, spec.files.input))).buffer,
  );
  // NCHW -> the loader's NHWC
  const images = new Float32Array(nchw.length);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let i = 0; i < H * W; i++) images[(b * H * W + i) * C + c] = nchw[(b * C + c) * H * W + i];
  const K = kw.num_classes;
  const targets = new Float32Array(B * K);
  spec.loss.labels.forEach((y: number, b: number) => {
    targets[b * K + y] = 1;
  });
  const graph = buildTrainGraph(
    {
      model,
      batch: B,
      optimizer: ConfigSchema.parse({}).train.optimizer,
      noWeightDecay: new Set(),
      clipGradNorm: null,
      distill: null,
    },
    "grads",
  );
  const weights = readSafetensors(path.join(FIXTURES, spec.files.state_dict)).tensors;
  const feeds: Record<string, ort.Tensor> = {
    [IO.images]: new ort.Tensor("float32", images, [B, H, W, C]),
    [IO.targets]: new ort.Tensor("float32", targets, [B, K]),
    [IO.lossScale]: new ort.Tensor("float32", Float32Array.of(1), []),
  };
  for (const [p, shape] of graph.params) feeds[p] = new ort.Tensor("float32", weights.get(p)!.data, shape);
  const session = await ort.InferenceSession.create(graph.bytes, { intraOpNumThreads: 1 });
  try {
    const out = await session.run(feeds);
    assertClose(out[IO.loss].data as Float32Array, [spec.loss.loss], 1e-5, "loss");
    const want = readSafetensors(path.join(FIXTURES, spec.files.grads)).tensors;
    assert.deepEqual(graph.trained.sort(), [...want.keys()].sort(), "one gradient per parameter");
    for (const [p, w] of want) assertClose(out[IO.grad(p)].data as Float32Array, w.data, 1e-4, `grad ${p}`);
  } finally {
    await session.release();
  }
});

test("memory stays flat over many steps: tfjs tensors and RSS", async () => {
  const cfg = ConfigSchema.parse({
    model: { img_size: 16, patch_size: 4, embed_dim: 32, depth: 2, num_heads: 2, drop_path_rate: 0.1 },
  });
  const modelCfg = { ...cfg.model, num_classes: 10 };
  const model = createModel(modelCfg, { seed: 0 });
  const trainer = new OrtTrainer(
    ort,
    {
      model: modelCfg,
      optimizer: cfg.train.optimizer,
      noWeightDecay: model.noWeightDecay(),
      clipGradNorm: 1,
      labelSmoothing: 0.1,
      distill: null,
      threads: 1,
    },
    model.paramShapes(),
  );
  let params = new Map([...model.stateDict()].map(([k, t]) => [k, t.data]));
  model.dispose();
  const batch = {
    images: new Float32Array(32 * 16 * 16 * 3).map((_, i) => Math.sin(i)),
    labels: Int32Array.from({ length: 32 }, (_, i) => i % 10),
    size: 32,
  };
  const steps = async (n: number, from: number) => {
    for (let s = from; s < from + n; s++) {
      const r = await trainer.step(params, [{ ...batch, seed: s }], 1e-3);
      params = new Map([...params].map(([k, v]) => [k, r.params.get(k) ?? v]));
    }
  };
  try {
    await steps(150, 0); // warm up: sessions, allocator arenas (they grow over the first ~100 steps)
    global.gc?.();
    const [rss0, tensors0] = [process.memoryUsage().rss, tf.memory().numTensors];
    await steps(400, 150);
    global.gc?.();
    const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
    assert.equal(tf.memory().numTensors, tensors0);
    // ~0.1 MB of parameters and state change hands each step (40 MB over the 400 steps if kept).
    assert.ok(grown < 10, `RSS grew by ${grown.toFixed(1)} MB over 400 steps`);
  } finally {
    await trainer.release();
  }
});

const root = fs.mkdtempSync(path.join(os.tmpdir(), "vit-ort-train-"));
const cacheDir = path.join(root, "cache");
const quiet = () => new Progress({ write: () => true });

const tinyConfig = (name: string) => tinyTrainConfig(name, path.join(root, "runs"), 3);

function run(opts: Partial<TrainOptions> & { config: Config }) {
  return train({
    backend: "onnxruntime",
    engine: { engine: "onnxruntime", ort, threads: 1 },
    progress: quiet(),
    cacheDir,
    ...opts,
  });
}

function tensorBytes(file: string): Map<string, Buffer> {
  const { tensors } = readSafetensors(file);
  return new Map(
    [...tensors].map(([k, t]) => [k, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]),
  );
}

test("on onnxruntime, 3 epochs straight == interrupted mid-epoch + resumed: bit-identical", async () => {
  const straight = await run({ config: tinyConfig("straight") });
  const stop = new AbortController();
  await assert.rejects(
    run({ config: tinyConfig("pieces"), signal: stop.signal, onStep: (s) => s === 7 && stop.abort() }),
    InterruptedError,
  );
  const dir = path.join(root, "runs", "pieces");
  const resumed = await run({ config: loadRunConfig(dir), resumeDir: dir });
  assert.equal(resumed.bestTop1, straight.bestTop1);
  for (const file of ["last", "lastState", "best", "ema"] as const) {
    const [a, b] = [tensorBytes(runPath(straight.runDir, file)), tensorBytes(runPath(dir, file))];
    assert.deepEqual([...b.keys()], [...a.keys()], `${file}: tensor names`);
    for (const [k, v] of a) assert.ok(v.equals(b.get(k)!), `${file}: ${k} differs`);
  }
});

test("on onnxruntime, a vit run distills a student (the teacher runs on onnxruntime too)", async () => {
  const teacherRun = await run({
    config: { ...tinyConfig("teacher"), train: { ...tinyConfig("t").train, epochs: 1 } },
  });
  const student = ConfigSchema.parse({
    ...tinyConfig("student"),
    model: { ...tinyConfig("s").model, distilled: true },
    train: { ...tinyConfig("s").train, epochs: 1 },
    distill: { teacher: teacherRun.runDir, type: "soft", alpha: 0.5, tau: 2 },
  });
  const r = await run({ config: student });
  const records = fs
    .readFileSync(runPath(r.runDir, "metrics"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const steps = records.filter((x) => x.kind === "step");
  assert.ok(steps.length > 0);
  for (const s of steps) {
    assert.ok(Number.isFinite(s["train/distill_loss"]) && s["train/distill_loss"] > 0, JSON.stringify(s));
    assert.ok(Number.isFinite(s["train/base_loss"]), JSON.stringify(s));
  }
});
