/**
 * Checkpoint files. Weights are a plain timm state_dict in safetensors that PyTorch loads as it
 * is; the `__metadata__` carries what eval and predict need (`config`: the resolved config as
 * JSON, `classes`: the class names as a JSON array). Everything else a resume needs goes in a
 * companion `*.state.safetensors`: optimizer moments (`optimizer.<slot>.<param>`), EMA weights
 * (`ema.<param>`) and the trainer state as JSON in its metadata. Both files carry the step, so a
 * crash between the two writes is caught on resume instead of silently mixing two steps.
 */
import type { Config } from "../config/schema.js";
import type { EngineName } from "../engines/select.js";
import { DataError } from "../errors.js";
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from "../io/safetensors.js";
import type { TensorData } from "../tensor.js";

/** What an optimizer carries from step to step, as the state file stores it. */
export interface OptimizerState {
  /** Moment tensors named `<slot>.<param>` (torch's `exp_avg`, `exp_avg_sq`, `momentum_buffer`). */
  tensors: Map<string, TensorData>;
  /** Updates applied to each parameter (torch keeps a `step` per parameter). */
  steps: Record<string, number>;
}

/** Where the run is: every random draw is a function of (seed, epoch, step), so this is the RNG state too. */
export interface RunProgress {
  /** The epoch in progress (0-based); `epochStep` optimizer steps of it are done. */
  epoch: number;
  epochStep: number;
  /** Optimizer steps done since the start of the run. */
  step: number;
  bestTop1: number | null;
  bestEpoch: number | null;
  /** Running sums of the epoch in progress (train loss and extra terms), for its epoch record. */
  running: { sums: Record<string, number>; count: number };
  optimizer: { name: string; steps: Record<string, number> };
}

export interface CheckpointMeta {
  config: Config;
  classes: string[];
  epoch: number;
  step: number;
  /** The engine the run trains on; a resume continues on it (absent in older runs: tfjs). */
  engine?: EngineName;
  /** Extra string fields, e.g. the val top-1 of a best checkpoint. */
  extra?: Record<string, string>;
}

export function writeWeights(file: string, weights: Map<string, TensorData>, meta: CheckpointMeta): void {
  writeSafetensors(file, weights, {
    format: "pt",
    config: JSON.stringify(meta.config),
    classes: JSON.stringify(meta.classes),
    epoch: String(meta.epoch),
    step: String(meta.step),
    ...(meta.engine && { engine: meta.engine }),
    ...meta.extra,
  });
}

/** The engine a checkpoint was trained on; runs from before the onnxruntime engine ran on tfjs. */
export function readCheckpointEngine(file: string): EngineName {
  const engine = readSafetensorsHeader(file).metadata.engine ?? "tfjs";
  if (engine !== "tfjs" && engine !== "onnxruntime") {
    throw new DataError(`${file}: __metadata__ "engine" is "${engine}", expected tfjs or onnxruntime`);
  }
  return engine;
}

/** The raw config object and classes stored in a checkpoint; the caller validates the config. */
export function readCheckpointMetadata(
  file: string,
  metadata: Record<string, string>,
): { config: unknown; classes: string[] } {
  const parse = (key: string): unknown => {
    if (metadata[key] === undefined)
      throw new DataError(`${file}: __metadata__ has no "${key}" (not a vit checkpoint)`);
    try {
      return JSON.parse(metadata[key]);
    } catch {
      throw new DataError(`${file}: __metadata__ "${key}" is not valid JSON`);
    }
  };
  const classes = parse("classes");
  if (!Array.isArray(classes) || !classes.every((c) => typeof c === "string")) {
    throw new DataError(`${file}: __metadata__ "classes" is not a list of names`);
  }
  return { config: parse("config"), classes };
}

export function writeRunProgress(
  file: string,
  progress: RunProgress,
  optimizer: OptimizerState,
  ema: Map<string, TensorData> | null,
): void {
  const tensors = new Map<string, TensorData>();
  for (const [name, t] of optimizer.tensors) tensors.set(`optimizer.${name}`, t);
  for (const [name, t] of ema ?? []) tensors.set(name, t);
  writeSafetensors(file, tensors, { trainer: JSON.stringify(progress), step: String(progress.step) });
}

export interface LoadedRunState {
  weights: Map<string, TensorData>;
  classes: string[];
  config: unknown;
  progress: RunProgress;
  optimizer: OptimizerState;
  ema: Map<string, TensorData>;
}

export function readRunState(weightsFile: string, stateFile: string): LoadedRunState {
  const w = readSafetensors(weightsFile);
  const s = readSafetensors(stateFile);
  const { config, classes } = readCheckpointMetadata(weightsFile, w.metadata);
  if (s.metadata.trainer === undefined) throw new DataError(`${stateFile}: __metadata__ has no "trainer"`);
  const progress = JSON.parse(s.metadata.trainer) as RunProgress;
  if (w.metadata.step !== s.metadata.step) {
    throw new DataError(
      `${stateFile} is from step ${s.metadata.step} but ${weightsFile} from step ${w.metadata.step}: the last save was cut short`,
    );
  }
  const optimizerTensors = new Map<string, TensorData>();
  const ema = new Map<string, TensorData>();
  for (const [name, t] of s.tensors) {
    if (name.startsWith("optimizer.")) optimizerTensors.set(name.slice("optimizer.".length), t);
    else if (name.startsWith("ema.")) ema.set(name, t);
  }
  return {
    weights: w.tensors,
    classes,
    config,
    progress,
    optimizer: { tensors: optimizerTensors, steps: progress.optimizer.steps },
    ema,
  };
}
