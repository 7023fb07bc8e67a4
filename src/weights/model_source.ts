/**
 * Where `vit eval`, `vit predict` and `vit attention` get their model: a run folder (its best
 * checkpoint, else its last; `--ema` its EMA weights), a checkpoint of this framework (config and
 * class names in its `__metadata__`), or a plain timm / Hugging Face / Google .npz weights file
 * plus `--model PRESET` or `--config F` (and optionally `--labels file.txt` for class names).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type Config, loadConfig, resolveConfig } from "../config/index.js";
import { type Classifier, createClassifier } from "../engines/classifier.js";
import type { EngineChoice } from "../engines/select.js";
import { DataError, UsageError } from "../errors.js";
import { isNpz } from "../io/npz.js";
import { readSafetensors, readSafetensorsHeader } from "../io/safetensors.js";
import { createModel, type VisionTransformer } from "../model/vision_transformer.js";
import type { TensorData } from "../tensor.js";
import { readCheckpointMetadata } from "./checkpoint.js";
import { loadPretrained, readPretrained } from "./pretrained.js";
import { runPath } from "./run_dir.js";

export interface ModelSourceOptions {
  run?: string;
  checkpoint?: string;
  /** The run's EMA weights (checkpoints/ema.safetensors). */
  ema?: boolean;
  /** For a plain weights file: a preset name, or a config file. */
  preset?: string;
  config?: string;
  /** For a plain weights file: class names, one per line. */
  labels?: string;
}

export interface InferenceModel {
  model: VisionTransformer;
  config: Config;
  /** Class names; null for a plain weights file without --labels (predictions are indices). */
  classes: string[] | null;
  numClasses: number;
  weightsFile: string;
  /** The run folder the weights belong to, if any (where eval writes confusion.png). */
  runDir: string | null;
}

/** The weights file the options name; errors say which option to change. */
export function resolveWeightsFile(o: ModelSourceOptions): { file: string; runDir: string | null } {
  if (!o.run === !o.checkpoint) {
    throw new UsageError(
      o.run ? "give --run DIR or --checkpoint FILE, not both" : "needs --run DIR or --checkpoint FILE",
    );
  }
  if (o.checkpoint) {
    if (o.ema) throw new UsageError("--ema picks a run's EMA weights: use it with --run DIR");
    if (!fs.existsSync(o.checkpoint)) throw new UsageError(`--checkpoint ${o.checkpoint}: no such file`);
    const dir = path.dirname(path.resolve(o.checkpoint));
    return { file: o.checkpoint, runDir: path.basename(dir) === "checkpoints" ? path.dirname(dir) : null };
  }
  const run = o.run!;
  if (!fs.existsSync(run) || !fs.statSync(run).isDirectory())
    throw new UsageError(`--run ${run}: no such folder`);
  if (o.ema) {
    const ema = runPath(run, "ema");
    if (!fs.existsSync(ema))
      throw new UsageError(`--run ${run}: no ${ema} (the run was trained without train.ema)`);
    return { file: ema, runDir: run };
  }
  for (const which of ["best", "last"] as const) {
    const file = runPath(run, which);
    if (fs.existsSync(file)) return { file, runDir: run };
  }
  throw new UsageError(
    `--run ${run}: no ${runPath(run, "best")} or ${runPath(run, "last")} (not a run folder?)`,
  );
}

/** Class names from a text file: one per line, surrounding blanks and empty lines ignored. */
export function readLabels(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError(`--labels ${file}: cannot read: ${(err as Error).message}`);
  }
  const labels = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  if (labels.length === 0) throw new UsageError(`--labels ${file}: no class names in it`);
  return labels;
}

export function loadInferenceModel(o: ModelSourceOptions): InferenceModel {
  const { file, runDir } = resolveWeightsFile(o);
  const metadata = isNpz(file) ? {} : readSafetensorsHeader(file).metadata;
  const loaded = metadata.config !== undefined ? loadCheckpoint(file, o) : loadPlainWeights(file, o);
  return { ...loaded, numClasses: loaded.model.numClasses, weightsFile: file, runDir };
}

/** The model as a Classifier on `engine` (eval, predict, serve), with what was loaded beside it. */
export interface InferenceClassifier extends Omit<InferenceModel, "model"> {
  classifier: Classifier;
}

export async function loadClassifier(
  o: ModelSourceOptions,
  engine: EngineChoice,
): Promise<InferenceClassifier> {
  const { model, ...loaded } = loadInferenceModel(o);
  return { ...loaded, classifier: await createClassifier(engine, model) };
}

type Loaded = Pick<InferenceModel, "model" | "config" | "classes">;

/** A checkpoint of this framework: its own config and class names, every key loaded strictly. */
function loadCheckpoint(file: string, o: ModelSourceOptions): Loaded {
  if (o.preset || o.config) {
    throw new UsageError(`${file} carries its own config: drop --model / --config`);
  }
  const { tensors, metadata } = readSafetensors(file);
  const meta = readCheckpointMetadata(file, metadata);
  const config = resolveConfig(meta.config, { source: file });
  const classes = o.labels ? readLabels(o.labels) : meta.classes;
  const numClasses = classifierWidth(tensors, file, classes, o.labels);
  const { model } = buildAndLoad(config, numClasses, (m) => m.loadStateDict(tensors, { source: file }));
  return { model, config, classes };
}

/**
 * Plain timm / Hugging Face / Google .npz weights with --model or --config, loaded as
 * `model.pretrained` is (src/weights/pretrained.ts): names converted, pos_embed resampled to the
 * config's image size, class names from a config.json beside the file unless --labels.
 */
function loadPlainWeights(file: string, o: ModelSourceOptions): Loaded {
  if (!o.preset === !o.config) {
    throw new UsageError(
      `${file} has no config in its metadata (a plain timm/Hugging Face file): give --model PRESET or --config FILE`,
    );
  }
  const config = o.config
    ? loadConfig(o.config)
    : resolveConfig({ model: { preset: o.preset } }, { source: "--model" });
  const weights = readPretrained(file);
  const labels = o.labels ? readLabels(o.labels) : null;
  const numClasses = classifierWidth(weights.stateDict, file, labels, o.labels);
  const { model, loaded } = buildAndLoad(config, numClasses, (m) => {
    const report = loadPretrained(m, weights);
    // A re-initialized classifier is random: fine to fine-tune, not to predict with.
    if (report.reinitialized.length > 0) {
      throw new DataError(
        `${file}: no trained ${report.reinitialized.join(", ")} for ${o.preset ?? o.config}`,
      );
    }
    return report;
  });
  return { model, config, classes: labels ?? loaded.classNames };
}

/** The config's model with `numClasses` outputs, loaded by `load`; disposed again if loading fails. */
function buildAndLoad<T>(
  config: Config,
  numClasses: number,
  load: (model: VisionTransformer) => T,
): { model: VisionTransformer; loaded: T } {
  const model = createModel({ ...config.model, num_classes: numClasses }, { seed: 0 });
  try {
    return { model, loaded: load(model) };
  } catch (err) {
    model.dispose();
    throw err;
  }
}

/** The class count the weights' classifier has, checked against the class names when given. */
function classifierWidth(
  weights: ReadonlyMap<string, TensorData>,
  file: string,
  classes: string[] | null,
  labelsFile: string | undefined,
): number {
  const head = weights.get("head.weight");
  if (!head)
    throw new DataError(`${file}: no head.weight: a model without a classifier cannot predict classes`);
  const numClasses = head.shape[0];
  if (classes && classes.length !== numClasses) {
    throw new DataError(
      `${labelsFile ?? file}: ${classes.length} class names but the classifier has ${numClasses} outputs`,
    );
  }
  return numClasses;
}
