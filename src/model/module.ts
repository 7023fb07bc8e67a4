/**
 * A small module system in PyTorch's shape: a module owns named parameters and child modules, and
 * the dotted path of a parameter in the tree is its timm state_dict name
 * (`blocks.3.attn.qkv.weight`). Parameters keep PyTorch layouts, so a state dict moves between
 * this framework and PyTorch without transposes.
 *
 * Building a module only declares its parameters (shape and kind); `initialize` allocates them.
 * So a model can be built just to count its parameters (`vit models`) without any tensor.
 */
import * as tf from "@tensorflow/tfjs";
import { DataError } from "../errors.js";
import { Rng } from "../random.js";
import type { StateDict, TensorData } from "../tensor.js";

/** What a parameter is for, so init.ts can pick timm's distribution for it. */
export type ParamKind = "linear" | "patch" | "norm" | "token" | "pos_embed";

export interface ParamSpec {
  shape: number[];
  kind: ParamKind;
  /** Inputs per output of the layer the weight or bias belongs to (init scales by it). */
  fanIn?: number;
}

/** Per-call state every layer sees: train/eval mode, the call's random streams, a capture hook. */
export class ForwardContext {
  private streams = 0;

  constructor(
    readonly training: boolean,
    private readonly seed: number,
    readonly hook?: (layer: Layer, output: tf.Tensor) => void,
  ) {}

  /** A fresh stream for one stochastic op. Numbered in call order, so a pass is a pure function of the seed. */
  nextRng(): Rng {
    return Rng.from(this.seed, this.streams++);
  }
}

interface Param {
  spec: ParamSpec;
  variable: tf.Variable | null;
}

function join(prefix: string, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export interface StateDictComparison {
  /** Expected keys the state dict lacks. */
  missing: string[];
  /** State dict keys nothing expects. */
  unexpected: string[];
  /** Keys present in both whose tensor has another shape. */
  wrongShape: string[];
  /** Keys with the right shape but another number of values (a malformed tensor). */
  wrongSize: string[];
}

/** A state dict against the parameter shapes a model declares (`paramShapes()`; nothing allocated). */
export function compareStateDict(
  expected: ReadonlyMap<string, readonly number[]>,
  stateDict: ReadonlyMap<string, TensorData>,
): StateDictComparison {
  const result: StateDictComparison = {
    missing: [...expected.keys()].filter((k) => !stateDict.has(k)),
    unexpected: [...stateDict.keys()].filter((k) => !expected.has(k)),
    wrongShape: [],
    wrongSize: [],
  };
  for (const [key, shape] of expected) {
    const t = stateDict.get(key);
    if (!t) continue;
    if (!sameShape(t.shape, shape)) result.wrongShape.push(key);
    else if (t.data.length !== shape.reduce((a, b) => a * b, 1)) result.wrongSize.push(key);
  }
  return result;
}

/** The first `n` keys, and how many there are when that is not all of them. */
export function listKeys(keys: readonly string[], n = 5): string {
  return keys.slice(0, n).join(", ") + (keys.length > n ? `, ... (${keys.length} in all)` : "");
}

export abstract class Module {
  private readonly params = new Map<string, Param>();
  private readonly children = new Map<string, Module>();

  protected addParam(name: string, shape: number[], kind: ParamKind, fanIn?: number): void {
    this.params.set(name, { spec: { shape, kind, fanIn }, variable: null });
  }

  protected addModule<M extends Module>(name: string, module: M): M {
    this.children.set(name, module);
    return module;
  }

  /** A parameter of this module (by its local name); throws before `initialize`. */
  protected param(name: string): tf.Variable {
    const variable = this.params.get(name)?.variable;
    if (!variable) throw new Error(`parameter "${name}" is used before the model is initialized`);
    return variable;
  }

  *namedModules(prefix = ""): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, child] of this.children) yield* child.namedModules(join(prefix, name));
  }

  /** Every parameter's spec in state_dict order: a module's own parameters, then its children's. */
  *namedParamSpecs(): Generator<[string, ParamSpec]> {
    for (const [path, module] of this.namedModules()) {
      for (const [name, p] of module.params) yield [join(path, name), p.spec];
    }
  }

  /** Every parameter's shape by state_dict name, in state_dict order. */
  paramShapes(): Map<string, number[]> {
    return new Map([...this.namedParamSpecs()].map(([name, spec]) => [name, spec.shape]));
  }

  private *namedParams(): Generator<[string, Param]> {
    for (const [path, module] of this.namedModules()) {
      for (const [name, p] of module.params) yield [join(path, name), p];
    }
  }

  numParams(): number {
    let n = 0;
    for (const [, spec] of this.namedParamSpecs()) n += spec.shape.reduce((a, b) => a * b, 1);
    return n;
  }

  /** Allocates every parameter with the values `values(name, spec)` returns (replacing any earlier ones). */
  initialize(values: (name: string, spec: ParamSpec) => Float32Array): void {
    for (const [name, p] of this.namedParams()) {
      const data = values(name, p.spec);
      const init = tf.tensor(data, p.spec.shape, "float32");
      p.variable?.dispose();
      p.variable = tf.variable(init, true);
      init.dispose();
    }
  }

  namedParameters(): Array<[name: string, variable: tf.Variable]> {
    return [...this.namedParams()].map(([name, p]) => {
      if (!p.variable) throw new Error(`parameter "${name}" is used before the model is initialized`);
      return [name, p.variable];
    });
  }

  /** A host copy of every parameter, by timm name, in state_dict order. */
  stateDict(): StateDict {
    const out: StateDict = new Map();
    for (const [name, variable] of this.namedParameters()) {
      // A copy: the cpu backend's dataSync returns the variable's own storage.
      out.set(name, { shape: [...variable.shape], data: new Float32Array(variable.dataSync()) });
    }
    return out;
  }

  /**
   * Copies `stateDict` into the parameters. Everything is checked before anything is written, so a
   * failed load leaves the model as it was. A shape mismatch is always an error; missing and
   * unexpected keys are errors when `strict` (the default) and are returned either way.
   */
  loadStateDict(
    stateDict: ReadonlyMap<string, TensorData>,
    opts: { strict?: boolean; source?: string } = {},
  ): { missing: string[]; unexpected: string[] } {
    const strict = opts.strict ?? true;
    const source = opts.source ?? "state dict";
    const params = new Map(this.namedParams());
    const shapes = this.paramShapes();
    const { missing, unexpected, wrongShape, wrongSize } = compareStateDict(shapes, stateDict);
    if (strict && missing.length > 0) {
      throw new DataError(`${source}: missing key(s) the model needs: ${listKeys(missing)}`);
    }
    if (strict && unexpected.length > 0) {
      throw new DataError(`${source}: unexpected key(s) the model does not have: ${listKeys(unexpected)}`);
    }
    const [badShape] = wrongShape;
    if (badShape !== undefined) {
      throw new DataError(
        `${source}: ${badShape} has shape ${formatShape(stateDict.get(badShape)!.shape)} but the model's is ${formatShape(shapes.get(badShape)!)}`,
      );
    }
    const [badSize] = wrongSize;
    if (badSize !== undefined) {
      const shape = shapes.get(badSize)!;
      throw new DataError(
        `${source}: ${badSize} has ${stateDict.get(badSize)!.data.length} values for shape ${formatShape(shape)} (${shape.reduce((a, b) => a * b, 1)})`,
      );
    }
    const updates: Array<[Param, TensorData]> = [];
    for (const [name, p] of params) {
      const t = stateDict.get(name);
      if (!t) continue;
      if (!p.variable) throw new Error(`parameter "${name}" is used before the model is initialized`);
      updates.push([p, t]);
    }
    for (const [p, t] of updates) {
      // A copy: the cpu backend would otherwise keep the caller's array as the variable's storage.
      tf.tidy(() => p.variable!.assign(tf.tensor(t.data.slice(), p.spec.shape, "float32")));
    }
    return { missing, unexpected };
  }

  dispose(): void {
    for (const [, p] of this.namedParams()) {
      p.variable?.dispose();
      p.variable = null;
    }
  }
}

/** A module with a one-tensor forward. `call` runs it and reports the output to the capture hook. */
export abstract class Layer extends Module {
  abstract forward(x: tf.Tensor, ctx: ForwardContext): tf.Tensor;

  call(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const y = this.forward(x, ctx);
    ctx.hook?.(this, y);
    return y;
  }
}

/** A disabled feature (drop path at rate 0, no pre-logits, no final norm). */
export class Identity extends Layer {
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}

/** Layers applied in order, named "0", "1", ... like torch's nn.Sequential. */
export class Sequential extends Layer {
  constructor(private readonly layers: readonly Layer[]) {
    super();
    for (const [i, layer] of layers.entries()) this.addModule(String(i), layer);
  }

  at(i: number): Layer {
    return this.layers[i];
  }

  forward(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return this.layers.reduce((h, layer) => layer.call(h, ctx), x);
  }
}
