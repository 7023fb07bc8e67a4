/**
 * Exponential moving average of the weights (timm ModelEmaV2): after every optimizer step
 * `ema = decay * ema + (1 - decay) * param`. The averaged weights live in the variables of a
 * second model, so evaluating the EMA is an ordinary forward pass of that model.
 */
import * as tf from "@tensorflow/tfjs";
import { DataError } from "../errors.js";
import type { TensorData } from "../tensor.js";
import type { NamedVariable } from "./optimizer.js";

export class ModelEma {
  private readonly pairs: Array<[name: string, source: tf.Variable, target: tf.Variable]>;

  /** `target` (the EMA model's parameters) starts as a copy of `source`, as ModelEmaV2 deep-copies the model. */
  constructor(
    source: readonly NamedVariable[],
    target: readonly NamedVariable[],
    readonly decay: number,
  ) {
    const byName = new Map(target);
    this.pairs = source.map(([name, v]) => {
      const t = byName.get(name);
      if (!t) throw new Error(`ema: the EMA model has no parameter ${name}`);
      return [name, v, t];
    });
    for (const [, s, t] of this.pairs) t.assign(s);
  }

  update(): void {
    tf.tidy(() => {
      for (const [, s, t] of this.pairs) t.assign(tf.add(tf.mul(t, this.decay), tf.mul(s, 1 - this.decay)));
    });
  }

  /** Named `ema.<param>` for the trainer-state file. */
  exportState(): Map<string, TensorData> {
    return new Map(
      this.pairs.map(([name, , t]) => [
        `ema.${name}`,
        { shape: t.shape, data: t.dataSync() as Float32Array },
      ]),
    );
  }

  importState(tensors: Map<string, TensorData>): void {
    for (const [name, , t] of this.pairs) {
      const h = tensors.get(`ema.${name}`);
      if (!h) throw new DataError(`trainer state: missing EMA tensor ema.${name}`);
      tf.tidy(() => t.assign(tf.tensor(h.data, t.shape)));
    }
  }
}
