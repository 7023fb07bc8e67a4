/**
 * Whether a config's model and batch fit the engine it runs on, checked before anything is
 * allocated (`vit train`, `vit config check`): the estimate of src/model/memory.ts against the
 * engine's limit. The limit is a function of the engine's name, so each engine states its own.
 */
import * as os from "node:os";
import type { Config } from "../config/schema.js";
import { ConfigError } from "../errors.js";
import { estimateMemory, type MemoryEstimate } from "../model/memory.js";

/** wasm32 addresses at most 4 GiB, whatever the machine has. */
export const WASM_HEAP_BYTES = 4 * 2 ** 30;

export interface MemoryLimit {
  bytes: number;
  /** What the limit is, for messages: "the wasm heap's 4.0 GB". */
  what: string;
}

export function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GB` : `${Math.ceil(bytes / 2 ** 20)} MB`;
}

/**
 * The memory `engine` can give a model: wasm its 4 GB heap (auto too: it falls back to wasm when
 * no native TensorFlow is installed); native engines (cpu, tensorflow, onnxruntime) the machine's
 * memory. `totalMemory` is for tests, which must not depend on the machine.
 */
export function memoryLimit(engine: string, totalMemory: number = os.totalmem()): MemoryLimit {
  if (engine === "wasm" || engine === "auto") {
    const bytes = Math.min(WASM_HEAP_BYTES, totalMemory);
    return {
      bytes,
      what: `the wasm heap's ${formatBytes(bytes)}${engine === "auto" ? " (auto falls back to wasm)" : ""}`,
    };
  }
  return {
    bytes: totalMemory,
    what: `this machine's ${formatBytes(totalMemory)} of memory (engine ${engine})`,
  };
}

/** The estimate of one training step of `cfg` at its train.batch_size. */
export function trainingMemory(cfg: Config, numClasses: number): MemoryEstimate {
  const opt = cfg.train.optimizer;
  return estimateMemory(cfg.model, {
    numClasses,
    batchSize: cfg.train.batch_size,
    training: true,
    optimizerSlots: opt.name === "adamw" ? 2 : opt.momentum > 0 ? 1 : 0,
    ema: cfg.train.ema !== null,
  });
}

/**
 * The one line `vit config check` prints after OK; throws a ConfigError naming `source`, the
 * estimate and the limit when a training step would not fit.
 */
export function checkTrainingMemory(
  cfg: Config,
  source: string,
  o: { numClasses: number; limit: MemoryLimit },
): string {
  const e = trainingMemory(cfg, o.numClasses);
  const what = `a training step of ${(e.params / 1e6).toFixed(1)} M parameters at train.batch_size ${cfg.train.batch_size}`;
  if (e.totalBytes > o.limit.bytes) {
    throw new ConfigError(
      `${source}: ${what} needs about ${formatBytes(e.totalBytes)}, more than ${o.limit.what}: ` +
        "lower train.batch_size (raise train.accum_steps to keep the total batch) or the model size",
    );
  }
  return `${what}: about ${formatBytes(e.totalBytes)} of ${o.limit.what}`;
}
