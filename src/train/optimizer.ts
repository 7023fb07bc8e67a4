/**
 * AdamW and SGD with PyTorch's update rules (torch.optim.AdamW / torch.optim.SGD, single-tensor
 * path), timm's parameter groups, and state keyed by parameter name so it saves next to the
 * weights and survives a resume bit for bit. State tensors are allocated up front so the
 * tensor count is the same before and after the first step.
 */
import * as tf from "@tensorflow/tfjs";
import type { OptimizerConfig } from "../config/schema.js";
import { DataError } from "../errors.js";
import { decays } from "../model/weight_decay.js";
import type { TensorData } from "../tensor.js";
import type { OptimizerState } from "../weights/checkpoint.js";

export type NamedVariable = [name: string, variable: tf.Variable];
export type GradMap = Map<string, tf.Tensor>;

export interface ParamGroups {
  decay: string[];
  noDecay: string[];
  /** Element counts, for the start-up summary. */
  decayElements: number;
  noDecayElements: number;
}

export function paramGroups(
  params: readonly NamedVariable[],
  noWeightDecay: ReadonlySet<string>,
): ParamGroups {
  const groups: ParamGroups = { decay: [], noDecay: [], decayElements: 0, noDecayElements: 0 };
  for (const [name, v] of params) {
    if (decays(name, v.shape, noWeightDecay)) {
      groups.decay.push(name);
      groups.decayElements += v.size;
    } else {
      groups.noDecay.push(name);
      groups.noDecayElements += v.size;
    }
  }
  return groups;
}

export interface Optimizer {
  readonly name: string;
  readonly groups: ParamGroups;
  /** One update of every parameter that has a gradient; parameters without one are left alone, as in torch. */
  apply(grads: GradMap, lr: number): void;
  exportState(): OptimizerState;
  importState(state: OptimizerState): void;
  dispose(): void;
}

/** Shared bookkeeping: parameters by name, zero-initialised slots, save and load. */
abstract class NamedOptimizer implements Optimizer {
  abstract readonly name: string;
  readonly groups: ParamGroups;
  protected readonly params: Map<string, tf.Variable>;
  protected readonly slots = new Map<string, Map<string, tf.Variable>>();
  protected readonly steps = new Map<string, number>();
  private readonly decaySet: Set<string>;

  constructor(
    params: readonly NamedVariable[],
    noWeightDecay: ReadonlySet<string>,
    slotNames: readonly string[],
    protected readonly weightDecay: number,
  ) {
    this.params = new Map(params);
    this.groups = paramGroups(params, noWeightDecay);
    this.decaySet = new Set(this.groups.decay);
    for (const slot of slotNames) {
      const vars = tf.tidy(() =>
        params.map(([name, v]): [string, tf.Variable] => [name, tf.variable(tf.zerosLike(v), false)]),
      );
      this.slots.set(slot, new Map(vars));
    }
    for (const [name] of params) this.steps.set(name, 0);
  }

  protected decayOf(name: string): number {
    return this.decaySet.has(name) ? this.weightDecay : 0;
  }

  protected slot(slot: string, name: string): tf.Variable {
    return this.slots.get(slot)!.get(name)!;
  }

  apply(grads: GradMap, lr: number): void {
    tf.tidy(() => {
      for (const [name, grad] of grads) {
        const param = this.params.get(name);
        if (!param) throw new Error(`optimizer: gradient for unknown parameter ${name}`);
        const step = this.steps.get(name)! + 1;
        this.steps.set(name, step);
        this.update(name, param, grad, lr, step);
      }
    });
  }

  protected abstract update(
    name: string,
    param: tf.Variable,
    grad: tf.Tensor,
    lr: number,
    step: number,
  ): void;

  exportState(): OptimizerState {
    const tensors = new Map<string, TensorData>();
    for (const [slot, vars] of this.slots) {
      for (const [name, v] of vars)
        tensors.set(`${slot}.${name}`, { shape: v.shape, data: v.dataSync() as Float32Array });
    }
    return { tensors, steps: Object.fromEntries(this.steps) };
  }

  importState(state: OptimizerState): void {
    for (const [slot, vars] of this.slots) {
      for (const [name, v] of vars) {
        const key = `${slot}.${name}`;
        const t = state.tensors.get(key);
        if (!t)
          throw new DataError(
            `optimizer state: missing tensor ${key} (was the run trained with ${this.name}?)`,
          );
        if (t.shape.join(",") !== v.shape.join(",")) {
          throw new DataError(`optimizer state: ${key} has shape [${t.shape}], expected [${v.shape}]`);
        }
        tf.tidy(() => v.assign(tf.tensor(t.data, v.shape)));
      }
    }
    for (const name of this.params.keys()) this.steps.set(name, state.steps[name] ?? 0);
  }

  dispose(): void {
    for (const vars of this.slots.values()) for (const v of vars.values()) v.dispose();
  }
}

/** torch.optim.AdamW: decoupled decay `p *= 1 - lr*wd`, then Adam with bias correction. */
export class AdamW extends NamedOptimizer {
  readonly name = "adamw";
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;

  constructor(
    params: readonly NamedVariable[],
    cfg: Pick<OptimizerConfig, "weight_decay" | "betas" | "eps">,
    noWeightDecay: ReadonlySet<string>,
  ) {
    super(params, noWeightDecay, ["exp_avg", "exp_avg_sq"], cfg.weight_decay);
    [this.beta1, this.beta2] = cfg.betas;
    this.eps = cfg.eps;
  }

  protected update(name: string, param: tf.Variable, grad: tf.Tensor, lr: number, step: number): void {
    const { beta1, beta2 } = this;
    const m = this.slot("exp_avg", name);
    const v = this.slot("exp_avg_sq", name);
    const wd = this.decayOf(name);
    const p = wd === 0 ? param : tf.mul(param, 1 - lr * wd);
    m.assign(tf.add(tf.mul(m, beta1), tf.mul(grad, 1 - beta1)));
    v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(grad), 1 - beta2)));
    // Bias corrections in double precision on the host, as torch computes them in Python.
    const stepSize = lr / (1 - beta1 ** step);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
    const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), this.eps);
    param.assign(tf.sub(p, tf.mul(tf.div(m, denom), stepSize)));
  }
}

/** torch.optim.SGD (dampening 0): coupled decay `g += wd*p`, momentum buffer, optional Nesterov. */
export class Sgd extends NamedOptimizer {
  readonly name = "sgd";
  private readonly momentum: number;
  private readonly nesterov: boolean;

  constructor(
    params: readonly NamedVariable[],
    cfg: Pick<OptimizerConfig, "weight_decay" | "momentum" | "nesterov">,
    noWeightDecay: ReadonlySet<string>,
  ) {
    super(params, noWeightDecay, cfg.momentum > 0 ? ["momentum_buffer"] : [], cfg.weight_decay);
    this.momentum = cfg.momentum;
    this.nesterov = cfg.nesterov;
  }

  protected update(name: string, param: tf.Variable, grad: tf.Tensor, lr: number): void {
    const wd = this.decayOf(name);
    let d = wd === 0 ? grad : tf.add(grad, tf.mul(param, wd));
    if (this.momentum > 0) {
      // A zero buffer makes the first update `buf = g`, which is torch's clone on step 1.
      const buf = this.slot("momentum_buffer", name);
      buf.assign(tf.add(tf.mul(buf, this.momentum), d));
      d = this.nesterov ? tf.add(d, tf.mul(buf, this.momentum)) : buf;
    }
    param.assign(tf.sub(param, tf.mul(d, lr)));
  }
}

export function createOptimizer(
  params: readonly NamedVariable[],
  cfg: OptimizerConfig,
  noWeightDecay: ReadonlySet<string>,
): Optimizer {
  return cfg.name === "adamw" ? new AdamW(params, cfg, noWeightDecay) : new Sgd(params, cfg, noWeightDecay);
}
