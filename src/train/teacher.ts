/**
 * The teacher of DeiT distillation (`distill.teacher`): a frozen classifier that sees exactly the
 * batch the student sees (augmented and mixed) and answers with logits. It is
 *
 * - a run folder (its best checkpoint, else its last) or a checkpoint of this framework, any
 *   preset and any img_size; or
 * - a TensorFlow.js LayersModel or GraphModel folder (model.json + weight shards), read from disk
 *   with a file IOHandler, so no tfjs-node is needed.
 *
 * The student's batch is adapted to the teacher: re-normalized from the student's mean/std to the
 * teacher's (a framework teacher; a tfjs model gets the student's normalization) and resized with
 * tf.image.resizeBilinear (half-pixel centres, PyTorch's `F.interpolate(..., "bilinear",
 * align_corners=False)`) when the image sizes differ. Resizing the student's batch, rather than
 * decoding each image again at the teacher's size, is what keeps the teacher on the same random
 * crop, flip, erasing and mixup/cutmix as the student. Upsampling is exact bilinear; downsampling
 * by more than 2x has no antialiasing (tfjs has none), so a teacher is best trained at or below
 * the student's size.
 *
 * The teacher runs in eval mode (no dropout or drop path; a distilled teacher answers with the
 * mean of its heads) and its variables are marked non-trainable; the training step calls it
 * before the gradient tape starts, so no gradient reaches it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { ConfigError, DataError } from "../errors.js";
import { readSafetensorsHeader } from "../io/safetensors.js";
import type { VisionTransformer } from "../model/vision_transformer.js";
import { loadInferenceModel } from "../weights/model_source.js";
import { runPath } from "../weights/run_dir.js";

export interface Teacher {
  /** One line for the start-up summary: what was loaded and how the batch is adapted. */
  readonly description: string;
  /** Teacher logits `[B, K]` for a student batch `[B, H, W, C]` (normalized the student's way). */
  logits(images: tf.Tensor4D): tf.Tensor2D;
  /** A vit teacher's model and its input adapter, so the student's engine can run it instead. */
  readonly vit?: { model: VisionTransformer; adapt(images: tf.Tensor4D): tf.Tensor4D };
  dispose(): void;
}

/** What the teacher must agree with: the student's classes and input. */
export interface StudentSpec {
  classes: readonly string[];
  imgSize: number;
  inChans: number;
  mean: readonly number[];
  std: readonly number[];
}

const KEY = "distill.teacher";

/** A run folder, a checkpoint, a tfjs model.json or a folder holding one. */
export async function loadTeacher(source: string, student: StudentSpec): Promise<Teacher> {
  if (!fs.existsSync(source)) throw new ConfigError(`${KEY}: ${source}: no such file or folder`);
  if (fs.statSync(source).isDirectory()) {
    const modelJson = path.join(source, "model.json");
    if (fs.existsSync(modelJson)) return loadTfjsTeacher(modelJson, student);
    const file = (["best", "last"] as const).map((w) => runPath(source, w)).find((f) => fs.existsSync(f));
    if (!file) {
      throw new ConfigError(
        `${KEY}: ${source} is neither a run folder (no ${runPath(source, "best")} or ${runPath(source, "last")}) ` +
          "nor a TensorFlow.js model folder (no model.json)",
      );
    }
    return loadVitTeacher(file, student);
  }
  if (source.endsWith(".json")) return loadTfjsTeacher(source, student);
  return loadVitTeacher(source, student);
}

function loadVitTeacher(file: string, student: StudentSpec): Teacher {
  if (readSafetensorsHeader(file).metadata.config === undefined) {
    throw new ConfigError(
      `${KEY}: ${file} has no config in its __metadata__ (plain timm / Hugging Face weights): ` +
        "fine-tune it with model.pretrained first and use that run as the teacher",
    );
  }
  const { model, config, classes } = loadInferenceModel({ checkpoint: file });
  try {
    checkClasses(file, classes!, student.classes);
    const m = config.model;
    checkChannels(file, m.in_chans, student.inChans);
    for (const [, v] of model.namedParameters()) v.trainable = false;
    const adapt = inputAdapter(student, { size: m.img_size, mean: config.data.mean, std: config.data.std });
    return {
      description: `${file} (${m.preset ?? "custom"}, ${m.img_size} px${m.distilled ? ", distilled: mean of its heads" : ""}${adapt.note})`,
      logits: (images) =>
        tf.tidy(() => model.forward(adapt.apply(images), { training: false }) as tf.Tensor2D),
      vit: { model, adapt: adapt.apply },
      dispose: () => model.dispose(),
    };
  } catch (err) {
    model.dispose();
    throw err;
  }
}

/**
 * Reads model.json and its weight shards with fs: the IOHandler tfjs-node's `file://` would
 * provide, for any backend.
 */
function fileModelHandler(modelJson: string): tf.io.IOHandler {
  return {
    load: async () => {
      let json: tf.io.ModelJSON;
      try {
        json = JSON.parse(fs.readFileSync(modelJson, "utf8"));
      } catch (err) {
        throw new DataError(
          `${modelJson}: cannot read a TensorFlow.js model.json: ${(err as Error).message}`,
        );
      }
      const dir = path.dirname(modelJson);
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const shards = manifest
          .flatMap((group) => group.paths)
          .map((p) => {
            const file = path.join(dir, p);
            if (!fs.existsSync(file)) throw new DataError(`${modelJson}: weight shard ${file} is missing`);
            const b = fs.readFileSync(file);
            return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
          });
        return [tf.io.getWeightSpecs(manifest), tf.io.concatenateArrayBuffers(shards)];
      });
    },
  };
}

type TfjsModel = tf.LayersModel | tf.GraphModel;

async function loadTfjsTeacher(modelJson: string, student: StudentSpec): Promise<Teacher> {
  const json = JSON.parse(fs.readFileSync(modelJson, "utf8")) as tf.io.ModelJSON;
  const topology = json.modelTopology as { node?: unknown } | undefined;
  const isGraph = json.format === "graph-model" || (topology !== undefined && "node" in topology);
  const handler = fileModelHandler(modelJson);
  const model: TfjsModel = isGraph ? await tf.loadGraphModel(handler) : await tf.loadLayersModel(handler);
  try {
    if (model instanceof tf.LayersModel) model.trainable = false;
    // [batch, H, W, C]; a dimension the model leaves open (null / -1) takes the student's.
    const shape = model.inputs[0]?.shape ?? [];
    const known = (d: number | null | undefined, fallback: number) => (d != null && d > 0 ? d : fallback);
    if (shape.length !== 0 && shape.length !== 4) {
      throw new ConfigError(
        `${KEY}: ${modelJson}: input shape [${shape}] is not an image batch [B, H, W, C]`,
      );
    }
    const [h, w] = [known(shape[1], student.imgSize), known(shape[2], student.imgSize)];
    if (h !== w) throw new ConfigError(`${KEY}: ${modelJson}: non-square input ${h}x${w} is not supported`);
    checkChannels(modelJson, known(shape[3], student.inChans), student.inChans);
    const adapt = inputAdapter(student, { size: h, mean: student.mean, std: student.std });
    // A Keras classifier often ends in softmax; log p gives the same softmax at any tau, as logits must.
    const probabilities = model instanceof tf.LayersModel && endsInSoftmax(model);
    const run = (images: tf.Tensor4D): tf.Tensor2D =>
      tf.tidy(() => {
        const out = model.predict(adapt.apply(images));
        if (!(out instanceof tf.Tensor)) {
          throw new ConfigError(
            `${KEY}: ${modelJson}: the model has several outputs; a teacher needs one [B, K]`,
          );
        }
        return (probabilities ? tf.log(tf.maximum(out, 1e-30)) : out) as tf.Tensor2D;
      });

    const probe = run(tf.zeros([1, student.imgSize, student.imgSize, student.inChans]));
    const outShape = probe.shape;
    probe.dispose();
    const k = student.classes.length;
    if (outShape.length !== 2 || outShape[1] !== k) {
      throw new ConfigError(
        `${KEY}: ${modelJson}: output shape [${outShape}] does not match the student's ${k} classes (${student.classes.join(", ")})`,
      );
    }
    const names = (json.userDefinedMetadata as { classes?: unknown } | undefined)?.classes;
    if (Array.isArray(names)) checkClasses(modelJson, names.map(String), student.classes);
    const classNote = Array.isArray(names)
      ? ""
      : `; no class names in model.json: its ${k} outputs are taken as the student's classes in order`;
    const kind = isGraph ? "GraphModel" : "LayersModel";
    return {
      description: `${modelJson} (TensorFlow.js ${kind}, ${h} px${probabilities ? ", softmax output read as log-probabilities" : ""}${adapt.note}${classNote})`,
      logits: run,
      dispose: () => model.dispose(),
    };
  } catch (err) {
    model.dispose();
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      `${KEY}: ${modelJson}: the model cannot run on the student's batch: ${(err as Error).message}`,
    );
  }
}

function endsInSoftmax(model: tf.LayersModel): boolean {
  const last = model.layers[model.layers.length - 1];
  return last?.getClassName() === "Softmax" || last?.getConfig().activation === "softmax";
}

function checkClasses(file: string, teacher: readonly string[], student: readonly string[]): void {
  if (teacher.length === student.length && teacher.every((c, i) => c === student[i])) return;
  throw new ConfigError(
    `${KEY}: ${file} was trained on classes [${teacher.join(", ")}] but the student's data has ` +
      `[${student.join(", ")}]: the teacher must have the same classes in the same order`,
  );
}

function checkChannels(file: string, teacher: number, student: number): void {
  if (teacher !== student) {
    throw new ConfigError(
      `${KEY}: ${file} takes ${teacher}-channel images but the student's have ${student}`,
    );
  }
}

interface InputAdapter {
  apply(images: tf.Tensor4D): tf.Tensor4D;
  /** What the adapter does, for the description ("" when nothing). */
  note: string;
}

/** The student's normalized batch -> the teacher's normalization and size. */
function inputAdapter(
  student: StudentSpec,
  teacher: { size: number; mean: readonly number[]; std: readonly number[] },
): InputAdapter {
  const same = (a: readonly number[], b: readonly number[]) => a.every((x, i) => x === b[i]);
  const renormalize = !same(student.mean, teacher.mean) || !same(student.std, teacher.std);
  const resize = teacher.size !== student.imgSize;
  // (x * std_s + mean_s - mean_t) / std_t = x * scale + shift, per channel.
  const scale = student.std.map((s, c) => s / teacher.std[c]);
  const shift = student.mean.map((m, c) => (m - teacher.mean[c]) / teacher.std[c]);
  const notes = [
    resize && `batch resized bilinearly from ${student.imgSize} to ${teacher.size} px`,
    renormalize && "re-normalized to its mean/std",
  ].filter(Boolean);
  return {
    note: notes.length > 0 ? `; ${notes.join(", ")}` : "",
    apply: (images) =>
      tf.tidy(() => {
        let x: tf.Tensor4D = images;
        if (renormalize) x = tf.add(tf.mul(x, tf.tensor1d(scale)), tf.tensor1d(shift));
        if (resize) x = tf.image.resizeBilinear(x, [teacher.size, teacher.size], false, true);
        return x;
      }),
  };
}
