/**
 * The training step's pure pieces on hand-made tensors: optimizer updates against values
 * computed by hand (in float64, from torch's formulas), schedules, losses, clipping,
 * accumulation, EMA and the tensor count across steps.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { ModelConfigSchema, ScheduleConfigSchema } from "../src/config/schema.js";
import { createModel, type VisionTransformer } from "../src/model/vision_transformer.js";
import { ModelEma } from "../src/train/ema.js";
import { clipByGlobalNorm } from "../src/train/grads.js";
import {
  classificationCriterion,
  labelSmoothingCrossEntropy,
  softTargetCrossEntropy,
} from "../src/train/losses.js";
import { AdamW, type GradMap, type NamedVariable, paramGroups, Sgd } from "../src/train/optimizer.js";
import { makeSchedule } from "../src/train/schedule.js";
import {
  computeGradients,
  disposeStepResult,
  type MicroBatch,
  type TrainState,
  trainStep,
} from "../src/train/step.js";
import { FIXTURES } from "./support.js";

await tf.setBackend("cpu");

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= tol * (1 + Math.abs(expected[i])),
      `${what}[${i}]: got ${actual[i]}, expected ${expected[i]}`,
    );
  }
}

/** Gradients for three steps, and the parameters torch's AdamW / SGD give after each. */
const GRADS = [
  [0.1, -0.2],
  [0.3, 0.1],
  [-0.2, 0.4],
];
const EXPECTED = {
  adamwDecay: [
    [0.8950000099999991, -1.8900000049999996],
    [0.79874690215559, -1.8539163026936758],
    [0.768962788329015, -1.8903798984528817],
  ],
  adamwNoDecay: [
    [0.900000009999999, -1.9000000049999999],
    [0.8082219022055899, -1.873366302718676],
    [0.7824315228897929, -1.9190994799913503],
  ],
  sgd: [
    [0.985, -1.97],
    [0.9365749999999999, -1.94315],
    [0.9083096249999999, -1.94926925],
  ],
  sgdNesterov: [
    [0.9715, -1.943],
    [0.89312075, -1.9192415],
    [0.883466527875, -1.95536955575],
  ],
};

/** What VisionTransformer.noWeightDecay() returns. */
const NO_DECAY = new Set(["cls_token", "dist_token", "pos_embed"]);

/** weight [1,2] decays; bias [2] and pos_embed [1,1,2] do not, whatever their rank. */
function threeParams(): NamedVariable[] {
  return [
    ["fc.weight", tf.variable(tf.tensor2d([[1, -2]]))],
    ["fc.bias", tf.variable(tf.tensor1d([1, -2]))],
    ["pos_embed", tf.variable(tf.tensor3d([[[1, -2]]]))],
  ];
}

function gradsFor(params: NamedVariable[], g: number[]): GradMap {
  return new Map(params.map(([name, v]) => [name, tf.tensor(g, v.shape)]));
}

test("AdamW matches torch.optim.AdamW for 3 steps, decay only on rank>=2 non-token params", () => {
  const params = threeParams();
  const opt = new AdamW(params, { weight_decay: 0.05, betas: [0.9, 0.999], eps: 1e-8 }, NO_DECAY);
  assert.deepEqual(opt.groups.decay, ["fc.weight"]);
  assert.deepEqual(opt.groups.noDecay, ["fc.bias", "pos_embed"]);
  for (let t = 0; t < 3; t++) {
    const grads = gradsFor(params, GRADS[t]);
    opt.apply(grads, 0.1);
    tf.dispose([...grads.values()]);
    close(params[0][1].dataSync(), EXPECTED.adamwDecay[t], 1e-6, `fc.weight step ${t + 1}`);
    close(params[1][1].dataSync(), EXPECTED.adamwNoDecay[t], 1e-6, `fc.bias step ${t + 1}`);
    close(params[2][1].dataSync(), EXPECTED.adamwNoDecay[t], 1e-6, `pos_embed step ${t + 1}`);
  }
  assert.deepEqual(opt.exportState().steps, { "fc.weight": 3, "fc.bias": 3, pos_embed: 3 });
  opt.dispose();
  tf.dispose(params.map(([, v]) => v));
});

test("SGD matches torch.optim.SGD with momentum, with and without Nesterov", () => {
  for (const nesterov of [false, true]) {
    const params = threeParams();
    const opt = new Sgd(params, { weight_decay: 0.05, momentum: 0.9, nesterov }, NO_DECAY);
    for (let t = 0; t < 3; t++) {
      const grads = gradsFor(params, GRADS[t]);
      opt.apply(grads, 0.1);
      tf.dispose([...grads.values()]);
      const want = (nesterov ? EXPECTED.sgdNesterov : EXPECTED.sgd)[t];
      close(params[0][1].dataSync(), want, 1e-6, `nesterov=${nesterov} step ${t + 1}`);
    }
    opt.dispose();
    tf.dispose(params.map(([, v]) => v));
  }
});

test("optimizer state export/import continues exactly where it was", () => {
  const a = threeParams();
  const optA = new AdamW(a, { weight_decay: 0.05, betas: [0.9, 0.999], eps: 1e-8 }, NO_DECAY);
  const b = threeParams();
  const optB = new AdamW(b, { weight_decay: 0.05, betas: [0.9, 0.999], eps: 1e-8 }, NO_DECAY);
  for (const g of GRADS.slice(0, 2)) {
    const grads = gradsFor(a, g);
    optA.apply(grads, 0.1);
    tf.dispose([...grads.values()]);
  }
  // b takes a's weights and state, as a resume does, then both take step 3.
  for (const [i, [, v]] of b.entries()) v.assign(a[i][1]);
  optB.importState(optA.exportState());
  for (const [params, opt] of [
    [a, optA],
    [b, optB],
  ] as const) {
    const grads = gradsFor(params, GRADS[2]);
    opt.apply(grads, 0.1);
    tf.dispose([...grads.values()]);
  }
  for (let i = 0; i < 3; i++) assert.deepEqual(b[i][1].dataSync(), a[i][1].dataSync());
  assert.throws(
    () => optB.importState({ tensors: new Map(), steps: {} }),
    /missing tensor exp_avg\.fc\.weight/,
  );
  optA.dispose();
  optB.dispose();
  tf.dispose([...a, ...b].map(([, v]) => v));
});

test("paramGroups counts elements in each group", () => {
  const params = threeParams();
  const g = paramGroups([...params, ["cls_token", tf.variable(tf.zeros([1, 1, 4]))]], NO_DECAY);
  assert.deepEqual(
    { decay: g.decayElements, noDecay: g.noDecayElements, names: g.noDecay },
    { decay: 2, noDecay: 8, names: ["fc.bias", "pos_embed", "cls_token"] },
  );
});

test("cosine schedule: warmup from warmup_lr, then timm's cosine over the whole run", () => {
  const schedule = ScheduleConfigSchema.parse({ warmup_epochs: 1, warmup_lr: 1e-6, min_lr: 1e-5 });
  const lr = makeSchedule({ schedule, baseLr: 5e-4, epochs: 10, stepsPerEpoch: 100 });
  close([lr(0), lr(50), lr(99)], [1e-6, 2.505e-4, 1e-6 + (99 * 4.99e-4) / 100], 1e-12, "warmup");
  const cos = (t: number) => 1e-5 + 0.5 * 4.9e-4 * (1 + Math.cos((Math.PI * t) / 1000));
  close([lr(100), lr(500), lr(999), lr(1000)], [cos(100), 2.55e-4, cos(999), 1e-5], 1e-12, "cosine");
  assert.ok(Math.abs(lr(100) - 4.880088465e-4) < 1e-12);
});

test("step and constant schedules", () => {
  const step = makeSchedule({
    schedule: ScheduleConfigSchema.parse({
      name: "step",
      warmup_epochs: 0,
      decay_epochs: 2,
      decay_rate: 0.5,
    }),
    baseLr: 0.1,
    epochs: 10,
    stepsPerEpoch: 10,
  });
  close([step(0), step(19), step(20), step(45)], [0.1, 0.1, 0.05, 0.025], 1e-15, "step");
  const constant = makeSchedule({
    schedule: ScheduleConfigSchema.parse({ name: "constant", warmup_epochs: 0.5, warmup_lr: 0 }),
    baseLr: 0.1,
    epochs: 3,
    stepsPerEpoch: 10,
  });
  close([constant(0), constant(1), constant(5), constant(29)], [0, 0.02, 0.1, 0.1], 1e-15, "constant");
});

test("label-smoothing CE: hand value and timm's fixture (torch label_smoothing=0.1)", () => {
  // logits [1,2,3], label 0: lse = log(e + e^2 + e^3); 0.9 * (lse - 1) + 0.1 * (lse - 2).
  const lse = Math.log(Math.E + Math.E ** 2 + Math.E ** 3);
  const got = tf.tidy(() =>
    labelSmoothingCrossEntropy(tf.tensor2d([[1, 2, 3]]), tf.tensor1d([0], "int32"), 0.1).dataSync(),
  );
  close(got, [0.9 * (lse - 1) + 0.1 * (lse - 2)], 1e-6, "hand");
  const fixture = JSON.parse(readFileSync(path.join(FIXTURES, "vit_cls.json"), "utf8"));
  const [plain, smoothed] = tf.tidy(() => {
    const logits = tf.tensor2d(fixture.expected.logits);
    const labels = tf.tensor1d(fixture.loss.labels, "int32");
    return [0, 0.1].map((s) => labelSmoothingCrossEntropy(logits, labels, s).dataSync()[0]);
  });
  close([plain, smoothed], [fixture.loss.loss, fixture.loss["loss_label_smoothing_0.1"]], 1e-6, "fixture");
});

test("soft-target CE equals label-smoothed CE on the equivalent soft targets", () => {
  const [soft, smooth] = tf.tidy(() => {
    const logits = tf.tensor2d([
      [0.5, -1, 2, 0],
      [3, 0.1, -0.4, 1],
    ]);
    // smoothing 0.2 over K=4: off = 0.05, on = 0.85.
    const targets = tf.tensor2d([
      [0.05, 0.05, 0.85, 0.05],
      [0.85, 0.05, 0.05, 0.05],
    ]);
    const criterion = classificationCriterion(0.2);
    const labels = tf.tensor1d([2, 0], "int32");
    const images = tf.zeros([2, 1, 1, 1]) as tf.Tensor4D;
    return [
      softTargetCrossEntropy(logits, targets).dataSync()[0],
      criterion({ images, output: logits, labels, targets: null }).loss.dataSync()[0],
    ];
  });
  close([soft], [smooth], 1e-6, "soft vs smoothed");
});

test("clip by global norm returns the pre-clip norm and scales to max_norm", () => {
  tf.tidy(() => {
    const grads: GradMap = new Map<string, tf.Tensor>([
      ["a", tf.tensor1d([3, 0])],
      ["b", tf.tensor2d([[0, 4]])],
    ]);
    const clipped = clipByGlobalNorm(grads, 1);
    close(clipped.norm.dataSync(), [5], 1e-7, "norm");
    close(clipped.grads.get("a")!.dataSync(), [3 / (5 + 1e-6), 0], 1e-7, "a");
    close(clipped.grads.get("b")!.dataSync(), [0, 4 / (5 + 1e-6)], 1e-7, "b");
    const loose = clipByGlobalNorm(grads, 10);
    close(loose.grads.get("b")!.dataSync(), [0, 4], 0, "unclipped below max_norm");
  });
});

test("EMA follows ema = decay * ema + (1 - decay) * p and round-trips its state", () => {
  const source: NamedVariable[] = [["w", tf.variable(tf.tensor1d([1, 2]))]];
  const target: NamedVariable[] = [["w", tf.variable(tf.zeros([2]))]];
  const ema = new ModelEma(source, target, 0.9);
  close(target[0][1].dataSync(), [1, 2], 0, "initial copy");
  source[0][1].assign(tf.tensor1d([3, -2]));
  ema.update();
  close(target[0][1].dataSync(), [0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * -2], 1e-7, "step 1");
  source[0][1].assign(tf.tensor1d([0, 0]));
  ema.update();
  close(target[0][1].dataSync(), [0.9 * 1.2, 0.9 * 1.6], 1e-7, "step 2");
  const saved = ema.exportState();
  assert.deepEqual([...saved.keys()], ["ema.w"]);
  ema.update();
  ema.importState(saved);
  close(target[0][1].dataSync(), [1.08, 1.44], 1e-7, "restored");
  tf.dispose([source[0][1], target[0][1]]);
});

/** A ViT small enough for a step to take milliseconds; dropout and drop path on unless `still`. */
function tinyVit(opts: { still?: boolean; classes?: number } = {}): VisionTransformer {
  const cfg = ModelConfigSchema.parse({
    img_size: 8,
    patch_size: 4,
    in_chans: 1,
    embed_dim: 16,
    depth: 2,
    num_heads: 2,
    mlp_ratio: 2,
    drop_rate: opts.still ? 0 : 0.1,
    drop_path_rate: opts.still ? 0 : 0.2,
  });
  return createModel({ ...cfg, num_classes: opts.classes ?? 5 }, { seed: 1 });
}

function randomBatch(
  size: number,
  shape: [number, number, number],
  classes: number,
  seed: number,
): MicroBatch {
  let s = seed;
  const rand = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const images = Float32Array.from({ length: size * shape[0] * shape[1] * shape[2] }, () => rand() * 2 - 1);
  const labels = Int32Array.from({ length: size }, () => Math.floor(rand() * classes));
  return { images, labels, size };
}

function stateFor(model: VisionTransformer, extra: Partial<TrainState> = {}): TrainState {
  const params = model.namedParameters();
  return {
    model,
    params,
    optimizer: new AdamW(
      params,
      { weight_decay: 0.05, betas: [0.9, 0.999], eps: 1e-8 },
      model.noWeightDecay(),
    ),
    criterion: classificationCriterion(0.1),
    schedule: () => 1e-3,
    clipGradNorm: 1,
    ema: null,
    inputShape: [8, 8, 1],
    numClasses: 5,
    seed: 0,
    accumSteps: 1,
    ...extra,
  };
}

test("accumulating 2 micro-batches of 8 gives the gradient of one batch of 16 (within 1e-5)", () => {
  const model = tinyVit({ still: true });
  const state = stateFor(model);
  const whole = randomBatch(16, [8, 8, 1], 5, 7);
  const per = 8 * 8;
  const half = (i: number): MicroBatch => ({
    images: whole.images.slice(i * 8 * per, (i + 1) * 8 * per),
    labels: whole.labels.slice(i * 8, (i + 1) * 8),
    size: 8,
  });
  const one = computeGradients(state, [whole], 0);
  const two = computeGradients({ ...state, accumSteps: 2 }, [half(0), half(1)], 0);
  close(two.loss.dataSync(), one.loss.dataSync(), 1e-6, "loss");
  assert.equal(two.grads.size, model.namedParameters().length, "every parameter has a gradient");
  for (const [name, g] of one.grads) {
    const a = g.dataSync();
    const b = two.grads.get(name)!.dataSync();
    const worst = Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
    assert.ok(worst <= 1e-5, `${name}: accumulated gradient differs from the full batch's by ${worst}`);
  }
  assert.ok(
    one.grads
      .get("head.weight")!
      .dataSync()
      .some((v) => Math.abs(v) > 1e-3),
    "gradients are not trivial",
  );
  tf.dispose([one.loss, two.loss, ...one.grads.values(), ...two.grads.values()]);
  state.optimizer.dispose();
  model.dispose();
});

for (const backend of ["cpu", "wasm"]) {
  test(`${backend}: trainStep learns, is a pure function of its step, and the tensor count is the same at step 2 and step 50`, async () => {
    await tf.setBackend(backend);
    try {
      const model = tinyVit();
      const emaModel = tinyVit();
      const state = stateFor(model, { accumSteps: 2 });
      state.ema = new ModelEma(state.params, emaModel.namedParameters(), 0.99);
      const batches = [randomBatch(8, [8, 8, 1], 5, 11), randomBatch(8, [8, 8, 1], 5, 12)];
      const losses: number[] = [];
      let countAt2 = 0;
      for (let step = 0; step < 50; step++) {
        const r = trainStep(state, batches, step);
        losses.push(r.loss.dataSync()[0]);
        disposeStepResult(r);
        if (step === 1) countAt2 = tf.memory().numTensors;
      }
      assert.equal(tf.memory().numTensors, countAt2, "tensors leaked between step 2 and step 50");
      assert.ok(losses[49] < losses[0] * 0.85, `loss did not fall: ${losses[0]} -> ${losses[49]}`);
      // Same weights, same step: the same dropout draws, so the same loss; another step draws others.
      const sd = model.stateDict();
      const again = (step: number) => {
        model.loadStateDict(sd);
        return tf.tidy(() => computeGradients(state, batches, step).loss.dataSync()[0]);
      };
      assert.equal(again(7), again(7));
      assert.notEqual(again(7), again(8));
      state.optimizer.dispose();
      model.dispose();
      emaModel.dispose();
    } finally {
      await tf.setBackend("cpu");
    }
  });
}
