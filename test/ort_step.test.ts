/**
 * One training step on onnxruntime against the same step on tfjs (wasm): from the same weights,
 * batch and seed (so the same drop-path masks, at drop path > 0), the loss, the gradient norm and
 * every updated parameter agree within 1e-4 relative, for AdamW and SGD, with clipping, label
 * smoothing, soft (mixup) targets, accumulation and a distilled student (soft and hard).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import * as ort from "onnxruntime-node";
import { type Config, ConfigSchema } from "../src/config/schema.js";
import { OrtTrainer } from "../src/engines/onnxruntime/trainer.js";
import { initWasm } from "../src/engines/tfjs/wasm_threads.js";
import { createModel, type VitConfig } from "../src/model/vision_transformer.js";
import type { TensorData } from "../src/tensor.js";
import { distillationCriterion } from "../src/train/distill.js";
import { classificationCriterion } from "../src/train/losses.js";
import { createTrainState } from "../src/train/state.js";
import { disposeStepResult, type MicroBatch, trainStep } from "../src/train/step.js";

await initWasm({ threads: 1 });

const K = 4;
const SIZE = 16;

interface Case {
  model?: Record<string, unknown>;
  train?: Record<string, unknown>;
  distill?: { type: "soft" | "hard"; alpha: number; tau: number };
  mixup?: boolean;
  /** Micro-batch sizes of the step. */
  batches?: number[];
}

function config(c: Case): Config {
  return ConfigSchema.parse({
    model: {
      img_size: SIZE,
      patch_size: 4,
      embed_dim: 24,
      depth: 3,
      num_heads: 2,
      mlp_ratio: 2,
      drop_path_rate: 0.2,
      num_classes: K,
      ...c.model,
    },
    train: { epochs: 1, batch_size: 4, ...c.train },
  });
}

/** Deterministic values in [-1, 1) (a small LCG). */
function uniform(seed: number): () => number {
  let s = seed;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

function microBatch(size: number, seed: number, mixup: boolean): MicroBatch {
  const rand = uniform(seed);
  const images = new Float32Array(size * SIZE * SIZE * 3).map(rand);
  const labels = Int32Array.from({ length: size }, (_, i) => (i * 3 + seed) % K);
  let targets: Float32Array | null = null;
  if (mixup) {
    // a mix of two classes per row, as mixup's targets
    targets = new Float32Array(size * K);
    for (let i = 0; i < size; i++) {
      targets[i * K + labels[i]] += 0.7;
      targets[i * K + ((labels[i] + 1) % K)] += 0.3;
    }
  }
  return { images, labels, size, targets };
}

function assertRelClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  const rel = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-12);
  assert.ok(rel <= 1e-4, `${what}: relative difference ${rel.toExponential(2)} > 1e-4`);
}

/** The step on tfjs and on onnxruntime from the same weights; compares everything that comes out. */
async function compare(c: Case): Promise<void> {
  const cfg = config(c);
  const modelCfg: VitConfig = { ...cfg.model, num_classes: K };
  const model = createModel(modelCfg, { seed: 3 });
  const teacherLogits = (size: number, seed: number) => new Float32Array(size * K).map(uniform(seed + 100));
  const sizes = c.batches ?? [4];
  const batches = sizes.map((n, i) => microBatch(n, i + 1, c.mixup ?? false));
  const d = c.distill ?? null;
  const base = classificationCriterion(cfg.train.label_smoothing);
  // A fixed teacher: its logits are an input of both steps.
  const teacher = d
    ? {
        description: "fixed",
        logits: (images: tf.Tensor4D) =>
          tf.tensor2d(teacherLogits(images.shape[0], images.shape[0]), [images.shape[0], K]),
        dispose: () => {},
      }
    : null;
  const state = createTrainState(model, cfg.train, {
    criterion: d ? distillationCriterion(base, d) : base,
    teacher,
    stepsPerEpoch: 10,
    inputShape: [SIZE, SIZE, 3],
    numClasses: K,
  });
  const before = model.stateDict();
  const STEP = 3;
  const r = trainStep(state, batches, STEP);
  const tfjs = {
    loss: r.loss.dataSync()[0],
    gradNorm: r.gradNorm.dataSync()[0],
    terms: Object.fromEntries(Object.entries(r.terms).map(([k, v]) => [k, v.dataSync()[0]])),
    params: model.stateDict(),
    optimizer: state.optimizer.exportState(),
  };
  disposeStepResult(r);
  state.optimizer.dispose();
  model.dispose();

  const trainer = new OrtTrainer(
    ort,
    {
      model: modelCfg,
      optimizer: cfg.train.optimizer,
      noWeightDecay: new Set(["pos_embed", "cls_token", "dist_token"]),
      clipGradNorm: cfg.train.clip_grad_norm,
      labelSmoothing: cfg.train.label_smoothing,
      distill: d,
      threads: 1,
    },
    new Map([...before].map(([k, t]) => [k, t.shape])),
  );
  try {
    const params = new Map([...before].map(([k, t]) => [k, t.data]));
    const o = await trainer.step(
      params,
      batches.map((b, i) => ({
        ...b,
        seed: cfg.train.seed + STEP * cfg.train.accum_steps + i,
        teacherLogits: d ? teacherLogits(b.size, b.size) : null,
      })),
      state.schedule(STEP),
    );
    assertRelClose([o.loss], [tfjs.loss], "loss");
    assertRelClose([o.gradNorm], [tfjs.gradNorm], "grad norm");
    assert.deepEqual(Object.keys(o.terms).sort(), Object.keys(tfjs.terms).sort());
    for (const [k, v] of Object.entries(tfjs.terms)) assertRelClose([o.terms[k]], [v], k);
    for (const [k, t] of tfjs.params) {
      const got = o.params.get(k) ?? before.get(k)!.data;
      if (k.endsWith("attn.qkv.bias")) {
        // k's bias has no gradient in exact arithmetic (softmax ignores a constant added to every
        // score of a row): both engines see rounding noise, which Adam scales up to +-lr. Compare q and v.
        const D = t.data.length / 3;
        for (const part of [0, 2]) {
          const range = [part * D, (part + 1) * D] as const;
          assertRelClose(got.subarray(...range), t.data.subarray(...range), `updated ${k} part ${part}`);
        }
      } else assertRelClose(got, t.data, `updated ${k}`);
    }
    const state2 = trainer.exportState();
    assert.deepEqual(state2.steps, tfjs.optimizer.steps);
    for (const [k, t] of tfjs.optimizer.tensors) {
      assertRelClose((state2.tensors.get(k) as TensorData).data, t.data, `optimizer ${k}`);
    }
  } finally {
    await trainer.release();
  }
}

describe("one step on onnxruntime equals one step on tfjs wasm", () => {
  test("AdamW, label smoothing, clipping", () =>
    compare({ train: { label_smoothing: 0.1, clip_grad_norm: 0.5 } }));
  test("SGD with Nesterov momentum and weight decay", () =>
    compare({
      train: {
        optimizer: { name: "sgd", lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 1e-3 },
      },
    }));
  test("soft (mixup) targets, dropout and attention dropout", () =>
    compare({ mixup: true, model: { drop_rate: 0.1, attn_drop_rate: 0.1 } }));
  test("accumulation over two micro-batches of different sizes", () =>
    compare({ train: { accum_steps: 2, clip_grad_norm: 1 }, batches: [4, 2] }));
  test("distilled student, soft distillation", () =>
    compare({ model: { distilled: true }, distill: { type: "soft", alpha: 0.5, tau: 2 } }));
  test("distilled student, hard distillation", () =>
    compare({ model: { distilled: true }, distill: { type: "hard", alpha: 0.5, tau: 1 } }));
  test("distilled student without distillation: head_dist is left alone", () =>
    compare({ model: { distilled: true } }));
  test("avg pool, no class token, pre-logits", () =>
    compare({ model: { class_token: false, global_pool: "avg", representation_size: 12 } }));
});
