/**
 * DeiT distillation: the loss against numbers computed with numpy, a student that follows a
 * teacher on its distillation head while half its labels are wrong, a teacher that gets no
 * gradient and keeps its weights, framework / tfjs LayersModel / GraphModel teachers loaded from
 * disk, their checks, and the documented two-step example through the CLI.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { ConfigSchema, ModelConfigSchema, OptimizerConfigSchema } from "../src/config/schema.js";
import { SYNTHETIC_CLASSES } from "../src/data/synthetic.js";
import { ConfigError } from "../src/errors.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { createModel, type VisionTransformer } from "../src/model/vision_transformer.js";
import {
  distillationCriterion,
  hardDistillationLoss,
  softDistillationLoss,
  trainingCriterion,
} from "../src/train/distill.js";
import { train } from "../src/train/loop.js";
import { classificationCriterion } from "../src/train/losses.js";
import { createOptimizer } from "../src/train/optimizer.js";
import { Progress } from "../src/train/progress.js";
import { computeGradients, disposeStepResult, type TrainState, trainStep } from "../src/train/step.js";
import { loadTeacher, type StudentSpec } from "../src/train/teacher.js";
import { writeWeights } from "../src/weights/checkpoint.js";
import { runPath } from "../src/weights/run_dir.js";
import { runVit } from "./support.js";

await tf.setBackend("cpu");

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const root = fs.mkdtempSync(path.join(os.tmpdir(), "vit-distill-"));
const cacheDir = path.join(root, "cache");
after(() => fs.rmSync(root, { recursive: true, force: true }));

function close(actual: number, expected: number, tol = 1e-6, what = "value"): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} != ${expected}`);
}

function read(t: tf.Tensor): number {
  const v = t.dataSync()[0];
  t.dispose();
  return v;
}

describe("loss values (numpy: F.kl_div(..., reduction='sum', log_target=True) * T^2 / numel; F.cross_entropy)", () => {
  // student dist head, teacher, student class head; labels [1, 0]
  const s = () => tf.tensor2d([1, 2, 0.5, 0.1, -1, 2], [2, 3]);
  const t = () => tf.tensor2d([0.5, 1.5, -1, 2, 0, 1], [2, 3]);
  const cls = () => tf.tensor2d([0.2, -0.3, 1.1, 1.5, 0.4, -0.2], [2, 3]);

  test("soft at tau 1 and 2, hard against the teacher's argmax", () => {
    close(read(softDistillationLoss(s(), t(), 1)), 0.1532760765412113, 1e-6, "soft tau 1");
    close(read(softDistillationLoss(s(), t(), 2)), 0.15639157728329894, 1e-6, "soft tau 2");
    close(read(hardDistillationLoss(s(), t())), 1.273076634848529, 1e-6, "hard");
    // identical logits: KL 0
    close(read(softDistillationLoss(t(), t(), 3)), 0, 1e-7, "soft, same logits");
  });

  test("total = (1 - alpha) * base + alpha * distill; base on the class head only; both terms returned", () => {
    const base = classificationCriterion(0.1);
    const input = () => ({
      images: tf.zeros([2, 1, 1, 1]) as tf.Tensor4D,
      output: { logits: cls(), distLogits: s() },
      labels: tf.tensor1d([1, 0], "int32"),
      targets: null,
      teacherLogits: t(),
    });
    const hard = distillationCriterion(base, { type: "hard", alpha: 0.3, tau: 1 })(input());
    close(read(hard.loss), 1.2038889129347279, 1e-6, "hard total");
    close(read(hard.terms!.base_loss), 1.1742370321145277, 1e-6, "label-smoothed base");
    close(read(hard.terms!.distill_loss), 1.273076634848529, 1e-6, "hard term");
    const soft = distillationCriterion(base, { type: "soft", alpha: 0.5, tau: 2 })(input());
    close(read(soft.loss), 0.6653143046989133, 1e-6, "soft total");
    // mixup / cutmix targets: soft-target CE as the base
    const mixed = { ...input(), targets: tf.tensor2d([0.1, 0.7, 0.2, 0.6, 0.3, 0.1], [2, 3]) };
    const r = distillationCriterion(base, { type: "soft", alpha: 0.5, tau: 2 })(mixed);
    close(read(r.loss), 0.7003143046989132, 1e-6, "soft total, mixed targets");
    close(read(r.terms!.base_loss), 1.2442370321145275, 1e-6, "soft-target CE base");
    // none: DeiT's base criterion alone, the distillation head untouched
    assert.equal(distillationCriterion(base, { type: "none", alpha: 0.5, tau: 1 }), base);
  });
});

// ---- tfjs models on disk ---------------------------------------------------------------------

/** Saves a LayersModel as model.json + one weight shard, as tfjs's file:// handler would. */
async function saveLayersModel(model: tf.LayersModel, dir: string): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const shard = "group1-shard1of1.bin";
      fs.writeFileSync(
        path.join(dir, shard),
        Buffer.from(tf.io.concatenateArrayBuffers(artifacts.weightData!)),
      );
      const { modelTopology, format, generatedBy, convertedBy, userDefinedMetadata } = artifacts;
      const json = {
        modelTopology,
        format,
        generatedBy,
        convertedBy,
        userDefinedMetadata,
        weightsManifest: [{ paths: [shard], weights: artifacts.weightSpecs! }],
      };
      fs.writeFileSync(path.join(dir, "model.json"), JSON.stringify(json));
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  return dir;
}

/** 8x8 RGB images of 4 classes: class c has its quadrant c (row-major) brighter, plus noise. */
function quadrantImages(n: number, seed: number): { images: Float32Array; classes: Int32Array } {
  let state = seed >>> 0;
  const rand = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const images = new Float32Array(n * 8 * 8 * 3);
  const classes = new Int32Array(n);
  for (let b = 0; b < n; b++) {
    const c = b % 4;
    classes[b] = c;
    for (let y = 0; y < 8; y++)
      for (let x = 0; x < 8; x++)
        for (let ch = 0; ch < 3; ch++) {
          const quadrant = (y >> 2) * 2 + (x >> 2);
          images[((b * 8 + y) * 8 + x) * 3 + ch] = (quadrant === c ? 1 : 0) + (rand() - 0.5);
        }
  }
  return { images, classes };
}

/** A perfect teacher for quadrantImages: 4x4 average pooling, then a Dense layer that sums each quadrant. */
function quadrantTeacher(): tf.LayersModel {
  const model = tf.sequential({
    layers: [
      tf.layers.averagePooling2d({ inputShape: [8, 8, 3], poolSize: 4, strides: 4 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 4 }),
    ],
  });
  // flatten of [2, 2, 3]: feature f belongs to quadrant floor(f / 3)
  const w = tf.buffer([12, 4]);
  for (let f = 0; f < 12; f++) w.set(4, f, Math.floor(f / 3));
  model.setWeights([w.toTensor(), tf.zeros([4])]);
  return model;
}

const QUADRANTS = ["q0", "q1", "q2", "q3"];
const quadrantStudent: StudentSpec = {
  classes: QUADRANTS,
  imgSize: 8,
  inChans: 3,
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
};

function tinyStudent(imgSize: number, numClasses: number): VisionTransformer {
  const cfg = ModelConfigSchema.parse({
    img_size: imgSize,
    patch_size: 4,
    embed_dim: 16,
    depth: 1,
    num_heads: 2,
    mlp_ratio: 2,
    distilled: true,
    drop_path_rate: 0,
  });
  return createModel({ ...cfg, num_classes: numClasses }, { seed: 1 });
}

function stepState(model: VisionTransformer, opts: Partial<TrainState>): TrainState {
  const params = model.namedParameters();
  return {
    model,
    params,
    optimizer: createOptimizer(params, OptimizerConfigSchema.parse({ lr: 3e-3, weight_decay: 0 }), new Set()),
    criterion: classificationCriterion(0),
    teacher: null,
    schedule: () => 3e-3,
    clipGradNorm: null,
    ema: null,
    inputShape: [model.cfg.img_size, model.cfg.img_size, model.cfg.in_chans],
    numClasses: model.numClasses,
    seed: 0,
    accumSteps: 1,
    ...opts,
  };
}

test("a tfjs LayersModel saved by the test loads from disk (no tfjs-node) and answers like the model in memory", async () => {
  const model = quadrantTeacher();
  const dir = await saveLayersModel(model, path.join(root, "layers"));
  const teacher = await loadTeacher(dir, quadrantStudent);
  assert.match(teacher.description, /TensorFlow\.js LayersModel, 8 px; no class names in model\.json/);
  const { images } = quadrantImages(8, 3);
  const x = tf.tensor4d(images, [8, 8, 8, 3]);
  const expected = model.predict(x) as tf.Tensor;
  const got = teacher.logits(x);
  assert.deepEqual(got.shape, [8, 4]);
  const [a, b] = [got.dataSync(), expected.dataSync()];
  for (let i = 0; i < a.length; i++) close(a[i], b[i], 1e-6, `logit ${i}`);
  tf.dispose([x, expected, got]);
  teacher.dispose();
  model.dispose();
});

test("hard distillation with half the labels wrong: the distillation head follows the teacher", async () => {
  const teacherModel = quadrantTeacher();
  const teacher = await loadTeacher(
    await saveLayersModel(teacherModel, path.join(root, "quadrants")),
    quadrantStudent,
  );
  teacherModel.dispose();
  const n = 64;
  const { images, classes } = quadrantImages(n, 7);
  // every other image of each class is labelled as the next class
  const labels = classes.map((c, i) => (Math.floor(i / 4) % 2 === 1 ? (c + 1) % 4 : c));
  const wrong = [...labels.keys()].filter((i) => labels[i] !== classes[i]);
  assert.equal(wrong.length, n / 2);

  const student = tinyStudent(8, 4);
  const state = stepState(student, {
    criterion: distillationCriterion(classificationCriterion(0), { type: "hard", alpha: 0.5, tau: 1 }),
    teacher,
  });
  const batch = 16;
  let tensorsAtStep2 = 0;
  for (let step = 0; step < 120; step++) {
    const from = (step * batch) % n;
    const r = trainStep(
      state,
      [
        {
          images: images.subarray(from * 192, (from + batch) * 192),
          labels: labels.subarray(from, from + batch),
          size: batch,
        },
      ],
      step,
    );
    disposeStepResult(r);
    if (step === 2) tensorsAtStep2 = tf.memory().numTensors;
  }
  assert.equal(tf.memory().numTensors, tensorsAtStep2, "tensor count grew between step 2 and step 120");

  const x = tf.tensor4d(images, [n, 8, 8, 3]);
  const out = student.forward(x, { training: true, seed: 0 }) as {
    logits: tf.Tensor2D;
    distLogits: tf.Tensor2D;
  };
  const teacherPred = teacher.logits(x).argMax(1).dataSync();
  const distPred = out.distLogits.argMax(1).dataSync();
  const clsProb = tf.softmax(out.logits).arraySync() as number[][];
  tf.dispose([x, out.logits, out.distLogits]);
  teacher.dispose();
  student.dispose();
  state.optimizer.dispose();

  // the teacher is right on every image, whatever the label says
  for (let i = 0; i < n; i++) assert.equal(teacherPred[i], classes[i]);
  const agree = wrong.filter((i) => distPred[i] === teacherPred[i]).length / wrong.length;
  assert.ok(agree >= 0.95, `distillation head agrees with the teacher on ${agree} of the mislabelled images`);
  // while the class head, trained on the labels alone, learnt the wrong ones (the noise tells images apart)
  const argmax = (p: number[]) => p.indexOf(Math.max(...p));
  const follows = wrong.filter((i) => argmax(clsProb[i]) === labels[i]).length / wrong.length;
  assert.ok(
    follows >= 0.8,
    `class head predicts the (wrong) label on only ${follows} of the mislabelled images`,
  );
});

// ---- framework teachers -------------------------------------------------------------------------

/** A checkpoint of this framework: a tiny (non-distilled) ViT at `imgSize` with its own mean/std. */
function writeTeacherCheckpoint(file: string, imgSize: number, classes: string[]): VisionTransformer {
  const config = ConfigSchema.parse({
    model: { img_size: imgSize, patch_size: 4, embed_dim: 16, depth: 1, num_heads: 2, mlp_ratio: 2 },
    data: { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] },
  });
  const model = createModel({ ...config.model, num_classes: classes.length }, { seed: 5 });
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeWeights(file, model.stateDict(), { config, classes, epoch: 1, step: 1 });
  return model;
}

test("a framework teacher re-normalizes the student's batch to its mean/std and resizes it to its img_size", async () => {
  const file = path.join(root, "vit-teacher", "checkpoints", "best.safetensors");
  const reference = writeTeacherCheckpoint(file, 16, QUADRANTS);
  // same size: the teacher's logits on the student-normalized batch == its own on its normalization
  const student: StudentSpec = { ...quadrantStudent, imgSize: 16 };
  const teacher = await loadTeacher(path.join(root, "vit-teacher"), student);
  assert.match(teacher.description, /best\.safetensors \(custom, 16 px; re-normalized to its mean\/std\)/);
  const pixels = tf.randomUniform([3, 16, 16, 3], 0, 1, "float32", 3) as tf.Tensor4D;
  const own = tf.div(tf.sub(pixels, [0.4, 0.5, 0.6]), [0.2, 0.25, 0.3]) as tf.Tensor4D;
  const studentNorm = tf.div(tf.sub(pixels, 0.5), 0.5) as tf.Tensor4D;
  const expected = reference.forward(own, { training: false }) as tf.Tensor2D;
  const got = teacher.logits(studentNorm);
  const [a, b] = [got.dataSync(), expected.dataSync()];
  for (let i = 0; i < a.length; i++) close(a[i], b[i], 1e-5, `logit ${i}`);
  tf.dispose([pixels, own, studentNorm, expected, got]);
  teacher.dispose();

  // student at 8 px: resized; a flat image stays flat, so the answer is the teacher's on a flat 16 px image
  const small = await loadTeacher(file, quadrantStudent);
  assert.match(small.description, /batch resized bilinearly from 8 to 16 px, re-normalized/);
  const flat8 = tf.fill([1, 8, 8, 3], 0.3) as tf.Tensor4D;
  const flat16 = tf.div(tf.sub(tf.fill([1, 16, 16, 3], 0.3 * 0.5 + 0.5), [0.4, 0.5, 0.6]), [0.2, 0.25, 0.3]);
  const e = reference.forward(flat16 as tf.Tensor4D, { training: false }) as tf.Tensor2D;
  const g = small.logits(flat8);
  const [ga, ea] = [g.dataSync(), e.dataSync()];
  for (let i = 0; i < ga.length; i++) close(ga[i], ea[i], 1e-5, `resized logit ${i}`);
  tf.dispose([flat8, flat16, e, g]);
  small.dispose();
  reference.dispose();
});

test("the resize is PyTorch's bilinear with align_corners=False (half-pixel centres)", async () => {
  // a teacher whose 16 logits are its 4x4 input: the student's 2x2 image as the teacher sees it
  const identity = tf.sequential({
    layers: [tf.layers.flatten({ inputShape: [4, 4, 1] }), tf.layers.dense({ units: 16 })],
  });
  identity.setWeights([tf.eye(16), tf.zeros([16])]);
  const dir = await saveLayersModel(identity, path.join(root, "identity"));
  identity.dispose();
  const names = Array.from({ length: 16 }, (_, i) => `p${i}`);
  const teacher = await loadTeacher(dir, { classes: names, imgSize: 2, inChans: 1, mean: [0], std: [1] });
  const x = tf.tensor4d([1, 2, 3, 5], [1, 2, 2, 1]);
  const got = teacher.logits(x);
  // torch.nn.functional.interpolate(x, size=4, mode="bilinear", align_corners=False): per axis the
  // weights of (first, second) source pixel are 1, .75/.25, .25/.75, 0 (edges clamped)
  const w = [1, 0.75, 0.25, 0];
  const src = [
    [1, 2],
    [3, 5],
  ];
  const expected = w.flatMap((wy) =>
    w.map(
      (wx) =>
        wy * (wx * src[0][0] + (1 - wx) * src[0][1]) + (1 - wy) * (wx * src[1][0] + (1 - wx) * src[1][1]),
    ),
  );
  const values = got.dataSync();
  for (const [i, e] of expected.entries()) close(values[i], e, 1e-5, `pixel ${i}`);
  tf.dispose([x, got]);
  teacher.dispose();
});

test("the teacher gets no gradient and its weights are unchanged after training steps", async () => {
  const file = path.join(root, "frozen", "teacher.safetensors");
  writeTeacherCheckpoint(file, 16, QUADRANTS).dispose();
  const before = new Set(Object.keys(tf.engine().registeredVariables));
  const teacher = await loadTeacher(file, quadrantStudent);
  const teacherVars = Object.values(tf.engine().registeredVariables).filter((v) => !before.has(v.name));
  assert.ok(teacherVars.length > 10, `${teacherVars.length} teacher variables`);
  assert.ok(
    teacherVars.every((v) => !v.trainable),
    "teacher variables are trainable",
  );
  const snapshot = teacherVars.map((v) => v.dataSync().slice());

  const student = tinyStudent(8, 4);
  const state = stepState(student, {
    criterion: distillationCriterion(classificationCriterion(0.1), { type: "soft", alpha: 0.5, tau: 2 }),
    teacher,
  });
  const { images, classes } = quadrantImages(8, 11);
  const batch = { images, labels: classes, size: 8 };
  const g = computeGradients(state, [batch], 0);
  assert.deepEqual(
    [...g.grads.keys()].sort(),
    student
      .namedParameters()
      .map(([k]) => k)
      .sort(),
    "gradients are exactly the student's parameters",
  );
  assert.ok(g.terms.distill_loss.dataSync()[0] > 0);
  tf.dispose([...g.grads.values(), g.loss, ...Object.values(g.terms)]);
  // tf.variableGrads over every trainable variable still finds none of the teacher's
  const all = tf.variableGrads(() => {
    const r = state.criterion({
      images: tf.tensor4d(images, [8, 8, 8, 3]),
      output: student.forward(tf.tensor4d(images, [8, 8, 8, 3]), { training: true, seed: 0 }),
      labels: tf.tensor1d(classes, "int32"),
      targets: null,
      teacherLogits: teacher.logits(tf.tensor4d(images, [8, 8, 8, 3])),
    });
    return r.loss;
  });
  for (const v of teacherVars) assert.equal(all.grads[v.name], undefined, `gradient for teacher ${v.name}`);
  tf.dispose([all.value, ...Object.values(all.grads)]);

  for (let step = 0; step < 5; step++) disposeStepResult(trainStep(state, [batch], step));
  teacherVars.forEach((v, i) => {
    assert.deepEqual(v.dataSync(), snapshot[i], `teacher variable ${v.name} changed`);
  });
  teacher.dispose();
  student.dispose();
  state.optimizer.dispose();
});

describe("teacher checks name what is wrong", () => {
  test("classes differ: both lists in the message", async () => {
    const file = path.join(root, "other-classes.safetensors");
    writeTeacherCheckpoint(file, 8, ["q0", "q1", "q2", "cat"]).dispose();
    await assert.rejects(
      loadTeacher(file, quadrantStudent),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.message ===
          `distill.teacher: ${file} was trained on classes [q0, q1, q2, cat] but the student's data has [q0, q1, q2, q3]: ` +
            "the teacher must have the same classes in the same order",
    );
  });

  test("a tfjs model's class names in model.json are checked; without them its output size is", async () => {
    const model = quadrantTeacher();
    model.setUserDefinedMetadata({ classes: ["q0", "q1", "q3", "q2"] });
    const dir = await saveLayersModel(model, path.join(root, "named"));
    await assert.rejects(
      loadTeacher(dir, quadrantStudent),
      /classes \[q0, q1, q3, q2\] but the student's data has \[q0, q1, q2, q3\]/,
    );
    model.setUserDefinedMetadata({ classes: QUADRANTS });
    await saveLayersModel(model, dir);
    const ok = await loadTeacher(dir, quadrantStudent);
    assert.doesNotMatch(ok.description, /no class names/);
    ok.dispose();
    model.dispose();
    await assert.rejects(
      loadTeacher(dir, { ...quadrantStudent, classes: ["a", "b", "c"] }),
      /distill\.teacher: .*model\.json: output shape \[1,4\] does not match the student's 3 classes \(a, b, c\)/,
    );
  });

  test("missing teacher, non-run folder, wrong channels", async () => {
    await assert.rejects(
      loadTeacher(path.join(root, "nope"), quadrantStudent),
      /^ConfigError: distill\.teacher: .*nope: no such file or folder$/,
    );
    const empty = path.join(root, "empty");
    fs.mkdirSync(empty);
    await assert.rejects(
      loadTeacher(empty, quadrantStudent),
      /is neither a run folder .* nor a TensorFlow\.js model folder/,
    );
    const file = path.join(root, "rgb.safetensors");
    writeTeacherCheckpoint(file, 8, QUADRANTS).dispose();
    await assert.rejects(
      loadTeacher(file, { ...quadrantStudent, inChans: 1, mean: [0.5], std: [0.5] }),
      /takes 3-channel images but the student's have 1/,
    );
  });

  test("a softmax output layer is read as log-probabilities", async () => {
    const model = tf.sequential({
      layers: [
        tf.layers.flatten({ inputShape: [8, 8, 3] }),
        tf.layers.dense({ units: 4, activation: "softmax", kernelInitializer: "glorotNormal" }),
      ],
    });
    const dir = await saveLayersModel(model, path.join(root, "softmax"));
    const teacher = await loadTeacher(dir, quadrantStudent);
    assert.match(teacher.description, /softmax output read as log-probabilities/);
    const x = tf.randomNormal([2, 8, 8, 3], 0, 1, "float32", 1) as tf.Tensor4D;
    const p = model.predict(x) as tf.Tensor;
    const logits = teacher.logits(x);
    const back = tf.softmax(logits).dataSync();
    const pd = p.dataSync();
    for (let i = 0; i < pd.length; i++) close(back[i], pd[i], 1e-6, `probability ${i}`);
    tf.dispose([x, p, logits]);
    teacher.dispose();
    model.dispose();
  });
});

test("a tfjs GraphModel teacher (model.json of a converted graph) loads and runs", async () => {
  // logits = mean over H, W of x  @  w: [B, 8, 8, 3] -> [B, 3] -> [B, 4]
  const dir = path.join(root, "graph");
  fs.mkdirSync(dir);
  const w = Float32Array.from({ length: 12 }, (_, i) => (i % 5) - 2);
  const axes = Int32Array.from([1, 2]);
  fs.writeFileSync(
    path.join(dir, "weights.bin"),
    Buffer.concat([Buffer.from(w.buffer), Buffer.from(axes.buffer)]),
  );
  const dims = (...d: number[]) => ({ dim: d.map((size) => ({ size: String(size) })) });
  const json = {
    format: "graph-model",
    generatedBy: "test",
    convertedBy: "hand",
    modelTopology: {
      node: [
        {
          name: "x",
          op: "Placeholder",
          attr: { dtype: { type: "DT_FLOAT" }, shape: { shape: dims(-1, 8, 8, 3) } },
        },
        {
          name: "w",
          op: "Const",
          attr: {
            dtype: { type: "DT_FLOAT" },
            value: { tensor: { dtype: "DT_FLOAT", tensorShape: dims(3, 4) } },
          },
        },
        {
          name: "axes",
          op: "Const",
          attr: {
            dtype: { type: "DT_INT32" },
            value: { tensor: { dtype: "DT_INT32", tensorShape: dims(2) } },
          },
        },
        {
          name: "pooled",
          op: "Mean",
          input: ["x", "axes"],
          attr: { keep_dims: { b: false }, T: { type: "DT_FLOAT" } },
        },
        {
          name: "logits",
          op: "MatMul",
          input: ["pooled", "w"],
          attr: { transpose_a: { b: false }, transpose_b: { b: false }, T: { type: "DT_FLOAT" } },
        },
      ],
      versions: { producer: 1 },
    },
    weightsManifest: [
      {
        paths: ["weights.bin"],
        weights: [
          { name: "w", shape: [3, 4], dtype: "float32" },
          { name: "axes", shape: [2], dtype: "int32" },
        ],
      },
    ],
  };
  fs.writeFileSync(path.join(dir, "model.json"), JSON.stringify(json));
  const teacher = await loadTeacher(dir, quadrantStudent);
  assert.match(teacher.description, /TensorFlow\.js GraphModel, 8 px/);
  const x = tf.randomNormal([2, 8, 8, 3], 0, 1, "float32", 2) as tf.Tensor4D;
  const expected = tf.matMul(tf.mean(x, [1, 2]), tf.tensor2d(w, [3, 4]));
  const got = teacher.logits(x);
  const [a, b] = [got.dataSync(), expected.dataSync()];
  for (let i = 0; i < a.length; i++) close(a[i], b[i], 1e-5, `logit ${i}`);
  tf.dispose([x, expected, got]);
  teacher.dispose();
});

// ---- the training loop ---------------------------------------------------------------------------

test("vit train with a tfjs teacher of another input size: both terms in metrics.jsonl, teacher files untouched", async () => {
  // synthetic data has 10 classes; the teacher looks at 8 px, the student at 16 px
  const model = tf.sequential({
    layers: [
      tf.layers.globalAveragePooling2d({ inputShape: [8, 8, 3] }),
      tf.layers.dense({ units: 10, kernelInitializer: "glorotNormal" }),
    ],
  });
  const dir = await saveLayersModel(model, path.join(root, "tfjs-teacher"));
  model.dispose();
  const shard = fs.readFileSync(path.join(dir, "group1-shard1of1.bin"));
  const config = ConfigSchema.parse({
    name: "tfjs-distilled",
    model: {
      img_size: 16,
      patch_size: 4,
      embed_dim: 16,
      depth: 1,
      num_heads: 2,
      mlp_ratio: 2,
      distilled: true,
    },
    data: { train: "synthetic", synthetic_per_class: 4, val_split: 0.25, workers: 1, aug: { mixup: 0.8 } },
    train: { epochs: 1, batch_size: 10, log_interval: 1 },
    distill: { teacher: dir, type: "soft", alpha: 0.5, tau: 2 },
    output: { dir: path.join(root, "runs") },
  });
  const lines: string[] = [];
  const result = await train({
    config,
    backend: "cpu",
    cacheDir,
    progress: new Progress({ write: (s: string) => lines.push(s) > 0 }),
  });
  assert.match(
    lines.join(""),
    /distill +soft, alpha 0\.5, tau 2; teacher .*LayersModel, 8 px; batch resized bilinearly from 16 to 8 px/,
  );
  const records = fs
    .readFileSync(runPath(result.runDir, "metrics"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const steps = records.filter((r) => r.kind === "step");
  assert.equal(steps.length, 3);
  for (const r of [...steps, records.find((r) => r.kind === "epoch")]) {
    const [base, distill] = [r["train/base_loss"], r["train/distill_loss"]];
    assert.ok(base > 0 && distill > 0, JSON.stringify(r));
    close(r["train/loss"], 0.5 * base + 0.5 * distill, 1e-5, "logged total");
  }
  assert.ok(shard.equals(fs.readFileSync(path.join(dir, "group1-shard1of1.bin"))));
  // the student is a distilled model: both heads saved
  assert.ok(readSafetensors(runPath(result.runDir, "last")).tensors.has("head_dist.weight"));
});

test("distillation while fine-tuning from pretrained distilled weights (DeiT's code refuses this)", async () => {
  // pretrained: a distilled ViT at 32 px with 4 classes; the student: 16 px, the data's 10 classes
  const arch = { patch_size: 4, embed_dim: 16, depth: 1, num_heads: 2, mlp_ratio: 2, distilled: true };
  const preCfg = ConfigSchema.parse({ model: { ...arch, img_size: 32 } });
  const pre = createModel({ ...preCfg.model, num_classes: 4 }, { seed: 9 });
  const preFile = path.join(root, "pretrained", "deit_micro.safetensors");
  fs.mkdirSync(path.dirname(preFile));
  writeWeights(preFile, pre.stateDict(), { config: preCfg, classes: QUADRANTS, epoch: 9, step: 90 });
  pre.dispose();
  const teacherFile = path.join(root, "ten-classes.safetensors");
  const synthetic = [...SYNTHETIC_CLASSES];
  writeTeacherCheckpoint(teacherFile, 16, synthetic).dispose();

  const config = ConfigSchema.parse({
    name: "finetune-distilled",
    model: { ...arch, img_size: 16, pretrained: preFile },
    data: { train: "synthetic", synthetic_per_class: 4, val_split: 0.25, workers: 1 },
    train: { epochs: 1, batch_size: 10, log_interval: 1, optimizer: { lr: 1e-3 } },
    distill: { teacher: teacherFile, type: "hard", alpha: 0.5 },
    output: { dir: path.join(root, "runs") },
  });
  const lines: string[] = [];
  const result = await train({
    config,
    backend: "cpu",
    cacheDir,
    progress: new Progress({ write: (s: string) => lines.push(s) > 0 }),
  });
  const log = lines.join("");
  assert.match(log, /pretrained +.*deit_micro\.safetensors/);
  assert.match(log, /warning: head re-initialized/);
  assert.match(log, /distill +hard, alpha 0\.5, tau 1; teacher .*ten-classes\.safetensors/);
  const epoch = fs
    .readFileSync(runPath(result.runDir, "metrics"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .find((r) => r.kind === "epoch");
  assert.ok(epoch["train/base_loss"] > 0 && epoch["train/distill_loss"] > 0, JSON.stringify(epoch));
  // the student started from the pretrained weights: a backbone weight is still nearly the file's
  const key = "blocks.0.attn.qkv.weight";
  const trained = readSafetensors(runPath(result.runDir, "last")).tensors.get(key)!.data;
  const fromFile = readSafetensors(preFile).tensors.get(key)!.data;
  const fresh = createModel({ ...config.model, num_classes: 10 }, { seed: 0 });
  const init = fresh.stateDict().get(key)!.data;
  fresh.dispose();
  const corr = (a: Float32Array, b: Float32Array) => {
    let [ab, aa, bb] = [0, 0, 0];
    for (let i = 0; i < a.length; i++) [ab, aa, bb] = [ab + a[i] * b[i], aa + a[i] ** 2, bb + b[i] ** 2];
    return ab / Math.sqrt(aa * bb);
  };
  assert.ok(
    corr(trained, fromFile) > 0.9,
    `correlation with the pretrained weights ${corr(trained, fromFile)}`,
  );
  assert.ok(corr(trained, init) < 0.5, `correlation with a fresh init ${corr(trained, init)}`);
});

test("trainingCriterion: no distill section or type none loads no teacher", async () => {
  for (const distill of [null, { teacher: "does/not/exist", type: "none" as const }]) {
    const cfg = ConfigSchema.parse({ model: { distilled: true }, distill });
    const { teacher } = await trainingCriterion(cfg, QUADRANTS);
    assert.equal(teacher, null);
  }
});

// ---- the documented two-step example through the CLI --------------------------------------------

const vit = (args: string[], cwd: string) => runVit(args, { cwd, env: { VIT_CACHE_DIR: cacheDir } });

test("two-step example: train the quickstart teacher, then configs/deit_distill_quickstart.yaml (tiny, cpu)", async () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "vit-distill-cli-"));
  const tiny = [
    "model.embed_dim=16",
    "model.depth=1",
    "model.num_heads=2",
    "data.synthetic_per_class=6",
    "data.workers=1",
    "train.epochs=1",
    "train.batch_size=16",
    "runtime.backend=cpu",
  ].flatMap((s) => ["--set", s]);
  // the teacher at 16 px, the student at the preset's 32 px: the batch is resized for the teacher
  const step1 = await vit(
    [
      "train",
      "--config",
      path.join(ROOT, "configs", "quickstart.yaml"),
      ...tiny,
      "--set",
      "model.img_size=16",
    ],
    cwd,
  );
  assert.equal(step1.code, 0, step1.stderr);
  assert.equal(step1.stdout.trim(), path.join("runs", "quickstart"));

  const step2 = await vit(
    ["train", "--config", path.join(ROOT, "configs", "deit_distill_quickstart.yaml"), ...tiny],
    cwd,
  );
  assert.equal(step2.code, 0, step2.stderr);
  const runDir = path.join(cwd, step2.stdout.trim());
  assert.match(
    step2.stderr,
    /distill +hard, alpha 0\.5, tau 1; teacher runs.quickstart.checkpoints.best\.safetensors \(vit_micro_patch8_32, 16 px; batch resized bilinearly from 32 to 16 px\)/,
  );
  const epoch = fs
    .readFileSync(runPath(runDir, "metrics"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .find((r) => r.kind === "epoch");
  assert.ok(epoch["train/base_loss"] > 0 && epoch["train/distill_loss"] > 0, JSON.stringify(epoch));

  // eval reports the class head, the distillation head and their mean
  const ev = await vit(["eval", "--run", runDir, "--json", "--backend", "cpu"], cwd);
  assert.equal(ev.code, 0, ev.stderr);
  const json = JSON.parse(ev.stdout);
  assert.deepEqual(Object.keys(json.heads), ["head", "head_dist", "mean"]);
  assert.equal(json.heads.mean.top1, json.top1);
  fs.rmSync(cwd, { recursive: true, force: true });
});
