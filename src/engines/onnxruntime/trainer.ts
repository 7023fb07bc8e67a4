/**
 * The training step on onnxruntime: the graphs of ./train_graph.ts in InferenceSessions (one per
 * graph kind and micro-batch size), fed from host Float32Arrays. The optimizer state lives here,
 * by the names src/train/optimizer.ts saves (`exp_avg.<param>`, ...), so a checkpoint is the same
 * file on either engine. The parameters are the caller's: it passes them in and takes the new ones.
 *
 * Dropout and drop-path masks are drawn here from the micro-batch's seed, in the order the tfjs
 * model draws them (ForwardContext streams), so a step repeats exactly on resume.
 */
import type * as Ort from "onnxruntime-node";
import type { DistillConfig, OptimizerConfig } from "../../config/schema.js";
import { DataError } from "../../errors.js";
import { keepMask } from "../../model/layers/dropout.js";
import { ForwardContext } from "../../model/module.js";
import type { VitConfig } from "../../model/vision_transformer.js";
import type { TensorData } from "../../tensor.js";
import type { RunDevice } from "./device.js";
import { type InferenceModel, inferenceModel } from "./inference.js";
import { type OrtModule, sessionOptions } from "./session.js";
import { buildTrainGraph, IO, slotNames, type TrainGraph, type TrainGraphKind } from "./train_graph.js";

export interface OrtTrainerSpec {
  model: VitConfig;
  optimizer: OptimizerConfig;
  noWeightDecay: ReadonlySet<string>;
  clipGradNorm: number | null;
  labelSmoothing: number;
  distill: Pick<DistillConfig, "type" | "alpha" | "tau"> | null;
  /** Intra-op threads; null: one per core. */
  threads: number | null;
  /** The device every session runs on (./device.ts); absent: cpu. */
  device?: RunDevice;
}

export interface OrtMicroBatch {
  /** [size, H, W, C], normalized. */
  images: Float32Array;
  labels: Int32Array;
  size: number;
  /** [size, K] soft targets (mixup / cutmix, smoothing folded in), or null for hard labels. */
  targets?: Float32Array | null;
  /** [size, K] the teacher's logits when distilling. */
  teacherLogits?: Float32Array | null;
  /** Drives the micro-batch's dropout and drop-path masks (as the tfjs model's forward seed). */
  seed: number;
}

export interface OrtStepResult {
  /** Summed over the micro-batches, each weighted by its share of the images. */
  loss: number;
  gradNorm: number;
  terms: Record<string, number>;
  /** The new value of every parameter the step trained (the others are unchanged). */
  params: Map<string, Float32Array>;
}

/** Optimizer state as src/train/optimizer.ts exports it. */
export interface OrtOptimizerState {
  tensors: Map<string, TensorData>;
  steps: Record<string, number>;
}

type Session = { session: Ort.InferenceSession; graph: TrainGraph };

export class OrtTrainer {
  private readonly sessions = new Map<string, Promise<Session>>();
  /** `<slot>.<param>` -> values; zero until the first update, as torch's lazily created state. */
  private readonly slots = new Map<string, Float32Array>();
  private readonly steps = new Map<string, number>();
  private evalSession: Promise<{ session: Ort.InferenceSession; model: InferenceModel }> | null = null;

  constructor(
    private readonly ort: OrtModule,
    private readonly spec: OrtTrainerSpec,
    private readonly paramShapes: ReadonlyMap<string, readonly number[]>,
  ) {
    for (const [name, shape] of paramShapes) {
      this.steps.set(name, 0);
      const size = shape.reduce((a, b) => a * b, 1);
      for (const slot of slotNames(spec.optimizer)) this.slots.set(`${slot}.${name}`, new Float32Array(size));
    }
  }

  /**
   * One optimizer step over `batches` (their gradients summed, as one batch of all their images):
   * one session.run, or with several micro-batches one per micro-batch and one for the update.
   */
  async step(
    params: ReadonlyMap<string, Float32Array>,
    batches: readonly OrtMicroBatch[],
    lr: number,
  ): Promise<OrtStepResult> {
    const total = batches.reduce((n, b) => n + b.size, 0);
    if (batches.length === 1) {
      const { session, graph } = await this.session("step", batches[0].size);
      const feeds = { ...this.batchFeeds(graph, batches[0], 1), ...this.paramFeeds(graph, params) };
      Object.assign(feeds, this.updateFeeds(graph, lr));
      return this.applied(graph, await session.run(feeds), graph.terms);
    }
    // Accumulation: each micro-batch's gradients, summed on the host in float32 as tfjs's addGrads does.
    let loss = 0;
    const terms: Record<string, number> = {};
    const sums = new Map<string, Float32Array>();
    let trained: string[] = [];
    for (const b of batches) {
      const { session, graph } = await this.session("grads", b.size);
      trained = graph.trained;
      const out = await session.run({
        ...this.batchFeeds(graph, b, b.size / total),
        ...this.paramFeeds(graph, params),
      });
      loss = Math.fround(loss + (out[IO.loss].data as Float32Array)[0]);
      for (const t of graph.terms) terms[t] = Math.fround((terms[t] ?? 0) + (out[t].data as Float32Array)[0]);
      for (const p of graph.trained) {
        const d = out[IO.grad(p)].data as Float32Array;
        const sum = sums.get(p);
        if (!sum) sums.set(p, d);
        else for (let i = 0; i < d.length; i++) sum[i] += d[i];
      }
    }
    const { session, graph } = await this.session("update", batches[0].size);
    const feeds = this.paramFeeds(graph, params);
    for (const p of trained)
      feeds[IO.grad(p)] = new this.ort.Tensor("float32", sums.get(p)!, graph.params.get(p)!);
    Object.assign(feeds, this.updateFeeds(graph, lr));
    const r = this.applied(graph, await session.run(feeds), []);
    return { ...r, loss, terms };
  }

  /**
   * Eval-mode logits [size, K] (a distilled model: the mean of its heads) of `images` under
   * `params`, for validation during training: one session whose weights are inputs.
   */
  async logits(
    params: ReadonlyMap<string, Float32Array>,
    images: Float32Array,
    size: number,
  ): Promise<Float32Array> {
    this.evalSession ??= (async () => {
      const model = inferenceModel(this.spec.model, { weights: null, heads: "mean" });
      const session = await this.ort.InferenceSession.create(
        model.bytes,
        sessionOptions(this.spec.threads, this.spec.device),
      );
      return { session, model };
    })();
    const { session, model } = await this.evalSession;
    const { img_size: S, in_chans: C } = this.spec.model;
    const feeds: Record<string, Ort.Tensor> = {
      [model.input]: new this.ort.Tensor("float32", images, [size, S, S, C]),
    };
    for (const [p, shape] of model.params) feeds[p] = new this.ort.Tensor("float32", params.get(p)!, shape);
    return (await session.run(feeds))[model.outputs[0]].data as Float32Array;
  }

  exportState(): OrtOptimizerState {
    const tensors = new Map<string, TensorData>();
    for (const [key, data] of this.slots) {
      const param = key.slice(key.indexOf(".") + 1);
      tensors.set(key, { shape: [...this.paramShapes.get(param)!], data: data.slice() });
    }
    return { tensors, steps: Object.fromEntries(this.steps) };
  }

  importState(state: OrtOptimizerState): void {
    for (const [key, data] of this.slots) {
      const t = state.tensors.get(key);
      if (!t) {
        throw new DataError(
          `optimizer state: missing tensor ${key} (was the run trained with ${this.spec.optimizer.name}?)`,
        );
      }
      if (t.data.length !== data.length) {
        throw new DataError(`optimizer state: ${key} has ${t.data.length} values, expected ${data.length}`);
      }
      data.set(t.data);
    }
    for (const name of this.steps.keys()) this.steps.set(name, state.steps[name] ?? 0);
  }

  async release(): Promise<void> {
    const sessions = await Promise.all([
      ...this.sessions.values(),
      ...(this.evalSession ? [this.evalSession] : []),
    ]);
    this.sessions.clear();
    this.evalSession = null;
    await Promise.all(sessions.map((s) => s.session.release()));
  }

  /** A session per (kind, micro-batch size): the graphs' shapes are fixed. Built on first use. */
  private session(kind: TrainGraphKind, batch: number): Promise<Session> {
    const key = `${kind}:${batch}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = (async () => {
        const graph = buildTrainGraph({ ...this.spec, batch }, kind);
        const session = await this.ort.InferenceSession.create(
          graph.bytes,
          sessionOptions(this.spec.threads, this.spec.device, { training: true }),
        );
        return { session, graph };
      })();
      this.sessions.set(key, s);
    }
    return s;
  }

  /** Images, targets (hard labels become smoothed one-hot rows), teacher logits, loss share, masks. */
  private batchFeeds(graph: TrainGraph, b: OrtMicroBatch, lossScale: number): Record<string, Ort.Tensor> {
    const K = this.spec.model.num_classes;
    const [S, C] = [this.spec.model.img_size, this.spec.model.in_chans];
    const feeds: Record<string, Ort.Tensor> = {
      [IO.images]: new this.ort.Tensor("float32", b.images, [b.size, S, S, C]),
      [IO.targets]: new this.ort.Tensor(
        "float32",
        b.targets ?? smoothedOneHot(b.labels, K, this.spec.labelSmoothing),
        [b.size, K],
      ),
      [IO.lossScale]: new this.ort.Tensor("float32", Float32Array.of(lossScale), []),
    };
    if (graph.terms.length > 0) {
      if (!b.teacherLogits) throw new Error("distillation needs the teacher's logits for the batch");
      feeds[IO.teacher] = new this.ort.Tensor("float32", b.teacherLogits, [b.size, K]);
    }
    // One stream per stochastic layer, numbered in call order: the tfjs forward's ForwardContext.
    const ctx = new ForwardContext(true, b.seed);
    for (const m of graph.masks) {
      const size = m.shape.reduce((x, y) => x * y, 1);
      feeds[m.input] = new this.ort.Tensor("float32", keepMask(size, 1 - m.rate, ctx.nextRng()), m.shape);
    }
    return feeds;
  }

  private paramFeeds(
    graph: TrainGraph,
    params: ReadonlyMap<string, Float32Array>,
  ): Record<string, Ort.Tensor> {
    const feeds: Record<string, Ort.Tensor> = {};
    for (const [p, shape] of graph.params) {
      const data = params.get(p);
      if (!data) throw new Error(`onnxruntime step: no value for parameter ${p}`);
      feeds[p] = new this.ort.Tensor("float32", data, shape);
    }
    return feeds;
  }

  /** Optimizer state and the update's scalars for the next step of the trained parameters. */
  private updateFeeds(graph: TrainGraph, lr: number): Record<string, Ort.Tensor> {
    const feeds: Record<string, Ort.Tensor> = {};
    for (const key of graph.slots) {
      const param = key.slice(key.indexOf(".") + 1);
      feeds[key] = new this.ort.Tensor("float32", this.slots.get(key)!, graph.params.get(param)!);
    }
    const steps = new Set(graph.trained.map((p) => this.steps.get(p)! + 1));
    if (steps.size > 1) {
      throw new DataError(
        `optimizer state: the trained parameters are at different steps (${[...steps].join(", ")}); the onnxruntime engine updates them together`,
      );
    }
    const [step] = steps;
    const opt = this.spec.optimizer;
    // As src/train/optimizer.ts: in double precision on the host, as torch computes them in Python.
    const values: Record<string, number> =
      opt.name === "adamw"
        ? {
            lr,
            decay_factor: 1 - lr * opt.weight_decay,
            step_size: lr / (1 - opt.betas[0] ** step),
            bc2_sqrt: Math.sqrt(1 - opt.betas[1] ** step),
          }
        : { lr };
    for (const s of graph.scalars) feeds[s] = new this.ort.Tensor("float32", Float32Array.of(values[s]), []);
    return feeds;
  }

  /** Takes the new optimizer state and counts the step; returns the new parameters. */
  private applied(
    graph: TrainGraph,
    out: Ort.InferenceSession.ReturnType,
    terms: readonly string[],
  ): OrtStepResult {
    const params = new Map<string, Float32Array>();
    for (const p of graph.trained) {
      params.set(p, out[IO.updated(p)].data as Float32Array);
      this.steps.set(p, this.steps.get(p)! + 1);
    }
    for (const key of graph.slots) this.slots.set(key, out[IO.updated(key)].data as Float32Array);
    const scalar = (n: string) => (out[n].data as Float32Array)[0];
    return {
      // the update-only graph has no loss: the caller sums the micro-batches'
      loss: out[IO.loss] ? scalar(IO.loss) : Number.NaN,
      gradNorm: scalar(IO.gradNorm),
      terms: Object.fromEntries(terms.map((t) => [t, scalar(t)])),
      params,
    };
  }
}

/** Hard labels as targets: (1 - s) one_hot + s / K, timm's LabelSmoothingCrossEntropy as a soft target. */
function smoothedOneHot(labels: Int32Array, K: number, smoothing: number): Float32Array {
  const t = new Float32Array(labels.length * K).fill(smoothing / K);
  labels.forEach((y, i) => {
    t[i * K + y] += 1 - smoothing;
  });
  return t;
}
