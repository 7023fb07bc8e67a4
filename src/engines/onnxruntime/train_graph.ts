/**
 * The training step as ONNX graphs over the model of ./vit_graph.ts: parameters, optimizer state
 * and dropout masks in, loss, gradient norm, new parameters and new state out.
 *
 *   "step":   forward (train mode) -> loss -> backward (./autodiff.ts) -> clip -> update
 *   "grads":  forward -> loss -> backward; the gradients are outputs (accumulation: the host sums them)
 *   "update": summed gradients in -> clip -> update
 *
 * The loss and the update are this engine's own definitions of src/train/losses.ts, distill.ts,
 * grads.ts and optimizer.ts (timm's / DeiT's / torch's), checked against them in test/ort_step.test.ts.
 */
import type { DistillConfig, OptimizerConfig } from "../../config/schema.js";
import { VisionTransformer, type VitConfig } from "../../model/vision_transformer.js";
import { decays } from "../../model/weight_decay.js";
import { gradients } from "./autodiff.js";
import { Graph } from "./graph.js";
import { type MaskSpec, vitForward } from "./vit_graph.js";

export type TrainGraphKind = "step" | "grads" | "update";

export interface TrainGraphSpec {
  model: VitConfig;
  /** Images per micro-batch (the graph's shapes are fixed). */
  batch: number;
  optimizer: OptimizerConfig;
  /** Parameters exempt from weight decay besides those of rank < 2 (timm's no_weight_decay()). */
  noWeightDecay: ReadonlySet<string>;
  clipGradNorm: number | null;
  distill: Pick<DistillConfig, "type" | "alpha" | "tau"> | null;
}

export interface TrainGraph {
  bytes: Uint8Array;
  /** Every parameter (all are inputs), name -> shape, state-dict order. */
  params: Map<string, number[]>;
  /** The parameters the loss reaches: they get a gradient and an update (head_dist without distillation does not). */
  trained: string[];
  /** Optimizer state tensors, `<slot>.<param>`, for the trained parameters. */
  slots: string[];
  masks: MaskSpec[];
  /** Extra loss terms logged by name (`base_loss`, `distill_loss` when distilling). */
  terms: string[];
  /** The scalar inputs of the update the graph has (of IO.scalars), each fed as a float32 []. */
  scalars: string[];
}

/** Graph input / output names the host feeds and reads. */
export const IO = {
  images: "images",
  targets: "targets",
  teacher: "teacher_logits",
  lossScale: "loss_scale",
  loss: "loss",
  gradNorm: "grad_norm",
  grad: (p: string) => `grad:${p}`,
  updated: (t: string) => `new:${t}`,
  /** Scalars the host computes from lr and the step in double precision, as torch does in Python. */
  scalars: {
    adamw: ["lr", "decay_factor", "step_size", "bc2_sqrt"],
    sgd: ["lr"],
  },
} as const;

export function slotNames(opt: OptimizerConfig): string[] {
  if (opt.name === "adamw") return ["exp_avg", "exp_avg_sq"];
  return opt.momentum > 0 ? ["momentum_buffer"] : [];
}

export function buildTrainGraph(spec: TrainGraphSpec, kind: TrainGraphKind): TrainGraph {
  const vit = new VisionTransformer(spec.model);
  const params = vit.paramShapes();
  const g = new Graph("vit_train");
  for (const [name, shape] of params) g.input(name, shape);

  let masks: MaskSpec[] = [];
  let terms: string[] = [];
  let grads: Map<string, string>;
  if (kind === "update") {
    // The summed gradients of the trained parameters come in; which those are, a forward pass decides.
    const trained = buildTrainGraph(spec, "grads").trained;
    grads = new Map(trained.map((p) => [p, g.input(IO.grad(p), params.get(p)!)]));
  } else {
    const loss = lossGraph(g, vit, spec);
    masks = loss.masks;
    terms = Object.keys(loss.terms);
    g.output(loss.loss, IO.loss, []);
    for (const [k, v] of Object.entries(loss.terms)) g.output(v, k, []);
    grads = gradients(g, loss.loss, [...params.keys()]);
  }
  const trained = [...grads.keys()];
  const slots = slotNames(spec.optimizer).flatMap((s) => trained.map((p) => `${s}.${p}`));
  const scalars: string[] = [];
  if (kind === "grads") {
    for (const [p, d] of grads) g.output(d, IO.grad(p));
  } else {
    scalars.push(...updateGraph(g, spec, params, grads));
  }
  return { bytes: g.encode({}, "onnxruntime training step"), params, trained, slots, masks, terms, scalars };
}

interface LossGraph {
  loss: string;
  terms: Record<string, string>;
  masks: MaskSpec[];
}

/**
 * The loss of one micro-batch times its share of the images (`loss_scale`):
 *   base = soft-target CE of the class head (label smoothing and mixup are in the host's targets)
 *   distill (DeiT): soft = KL(teacher / tau || dist / tau) * tau^2 / (B K), hard = CE(dist, argmax teacher)
 *   loss = (1 - alpha) base + alpha distill
 */
function lossGraph(g: Graph, vit: VisionTransformer, spec: TrainGraphSpec): LossGraph {
  const { img_size: S, in_chans: C } = spec.model;
  const B = spec.batch;
  const K = vit.numClasses;
  const image = g.input(IO.images, [B, S, S, C]);
  const { heads, masks } = vitForward(g, vit, {
    image,
    layout: "nhwc",
    param: (key) => key,
    training: true,
    fused: true,
  });
  const targets = g.input(IO.targets, [B, K]);
  const scale = g.input(IO.lossScale, []);
  const d = spec.distill && spec.distill.type !== "none" ? spec.distill : null;
  const base = softTargetCE(g, heads[0], targets, "base");
  if (!d) {
    return { loss: g.op("Mul", [base, scale], "loss_scaled"), terms: {}, masks };
  }
  if (heads.length !== 2) {
    throw new Error("distillation needs a distilled student (model.distilled: true) that returns two heads");
  }
  const teacher = g.input(IO.teacher, [B, K]);
  let distill: string;
  if (d.type === "soft") {
    const tau = g.floatScalar(d.tau);
    const logP = g.op("LogSoftmax", [g.op("Div", [heads[1], tau], "dist_tau")], "dist_logp", {
      axis: { int: -1 },
    });
    const logQ = g.op("LogSoftmax", [g.op("Div", [teacher, tau], "teacher_tau")], "teacher_logq", {
      axis: { int: -1 },
    });
    const pointwise = g.op(
      "Mul",
      [g.op("Exp", [logQ], "teacher_q"), g.op("Sub", [logQ, logP], "log_ratio")],
      "kl_terms",
    );
    const kl = g.op("ReduceSum", [pointwise, g.int64s([0, 1])], "kl", { keepdims: { int: 0 } });
    distill = g.op("Mul", [kl, g.floatScalar((d.tau * d.tau) / (B * K))], "distill");
  } else {
    const hard = g.op("ArgMax", [teacher], "teacher_argmax", { axis: { int: 1 }, keepdims: { int: 0 } });
    const oneHot = g.op("OneHot", [hard, g.int64s([K], []), g.int64s([0, 1])], "teacher_onehot_i", {
      axis: { int: -1 },
    });
    distill = softTargetCE(
      g,
      heads[1],
      g.op("Cast", [oneHot], "teacher_onehot", { to: { int: 1 } }),
      "distill",
    );
  }
  const loss = g.op(
    "Add",
    [
      g.op("Mul", [base, g.floatScalar(1 - d.alpha)], "base_weighted"),
      g.op("Mul", [distill, g.floatScalar(d.alpha)], "distill_weighted"),
    ],
    "loss_unscaled",
  );
  return {
    loss: g.op("Mul", [loss, scale], "loss_scaled"),
    terms: {
      base_loss: g.op("Mul", [base, scale], "base_loss_scaled"),
      distill_loss: g.op("Mul", [distill, scale], "distill_loss_scaled"),
    },
    masks,
  };
}

/** timm SoftTargetCrossEntropy: mean over the batch of -sum_k target_k log softmax(logits)_k. */
function softTargetCE(g: Graph, logits: string, targets: string, name: string): string {
  const logp = g.op("LogSoftmax", [logits], `${name}.logp`, { axis: { int: -1 } }); // [B, K]
  const perSample = g.op(
    "ReduceSum",
    [g.op("Mul", [targets, logp], `${name}.tlogp`), g.int64s([1])],
    `${name}.sum`,
    {
      keepdims: { int: 0 },
    },
  ); // [B]
  const mean = g.op("ReduceMean", [perSample], `${name}.mean`, { axes: { ints: [0] }, keepdims: { int: 0 } });
  return g.op("Neg", [mean], name);
}

/**
 * torch's clip_grad_norm_ (total norm over every gradient, scale min(1, max / (norm + 1e-6))),
 * then torch.optim.AdamW / SGD on each trained parameter; outputs `grad_norm` and `new:<tensor>`.
 * Returns the scalar inputs it declared.
 */
function updateGraph(
  g: Graph,
  spec: TrainGraphSpec,
  params: Map<string, number[]>,
  grads: Map<string, string>,
): string[] {
  const opt = spec.optimizer;
  const squares = [...grads.values()].map((d) =>
    g.op("ReduceSumSquare", [d], `${d}.sumsq`, { keepdims: { int: 0 } }),
  );
  const norm = g.op("Sqrt", [g.op("Sum", squares, "grad_sumsq")], "grad_norm_value");
  g.output(norm, IO.gradNorm, []);
  let coef: string | null = null;
  if (spec.clipGradNorm !== null) {
    const ratio = g.op(
      "Div",
      [g.floatScalar(spec.clipGradNorm), g.op("Add", [norm, g.floatScalar(1e-6)], "norm_eps")],
      "clip_ratio",
    );
    coef = g.op("Min", [ratio, g.floatScalar(1)], "clip_coef");
  }
  const scalars: string[] = [];
  const scalar = (n: string) => {
    if (!g.has(n)) scalars.push(g.input(n, []));
    return n;
  };
  // The last node of each new tensor writes the graph output itself: no Identity copy per tensor.
  const out = (value: string) => g.output(value);
  for (const [p, d] of grads) {
    const grad = coef ? g.op("Mul", [d, coef], `${p}.clipped`) : d;
    const decay = decays(p, params.get(p)!, spec.noWeightDecay) ? opt.weight_decay : 0;
    if (opt.name === "adamw") {
      const [b1, b2] = opt.betas;
      const [m, v] = [g.input(`exp_avg.${p}`, params.get(p)!), g.input(`exp_avg_sq.${p}`, params.get(p)!)];
      // decoupled decay p * (1 - lr wd), then Adam with bias corrections
      const p1 = decay === 0 ? p : g.op("Mul", [p, scalar("decay_factor")], `${p}.decayed`);
      const m1 = g.op(
        "Add",
        [
          g.op("Mul", [m, g.floatScalar(b1)], `${p}.m_b1`),
          g.op("Mul", [grad, g.floatScalar(1 - b1)], `${p}.g_b1`),
        ],
        IO.updated(`exp_avg.${p}`),
      );
      const g2 = g.op("Mul", [grad, grad], `${p}.g2`);
      const v1 = g.op(
        "Add",
        [
          g.op("Mul", [v, g.floatScalar(b2)], `${p}.v_b2`),
          g.op("Mul", [g2, g.floatScalar(1 - b2)], `${p}.g2_b2`),
        ],
        IO.updated(`exp_avg_sq.${p}`),
      );
      const denom = g.op(
        "Add",
        [
          g.op("Div", [g.op("Sqrt", [v1], `${p}.v_sqrt`), scalar("bc2_sqrt")], `${p}.v_hat`),
          g.floatScalar(opt.eps),
        ],
        `${p}.denom`,
      );
      const stepv = g.op("Mul", [g.op("Div", [m1, denom], `${p}.ratio`), scalar("step_size")], `${p}.step`);
      out(g.op("Sub", [p1, stepv], IO.updated(p)));
      out(m1);
      out(v1);
    } else {
      // coupled decay g + wd p, momentum buffer (zero at first: buf = g, torch's clone), optional Nesterov
      let dir =
        decay === 0 ? grad : g.op("Add", [grad, g.op("Mul", [p, g.floatScalar(decay)], `${p}.wd`)], `${p}.d`);
      if (opt.momentum > 0) {
        const buf = g.input(`momentum_buffer.${p}`, params.get(p)!);
        const buf1 = g.op(
          "Add",
          [g.op("Mul", [buf, g.floatScalar(opt.momentum)], `${p}.buf_m`), dir],
          IO.updated(`momentum_buffer.${p}`),
        );
        out(buf1);
        dir = opt.nesterov
          ? g.op("Add", [dir, g.op("Mul", [buf1, g.floatScalar(opt.momentum)], `${p}.nest`)], `${p}.dir`)
          : buf1;
      }
      out(g.op("Sub", [p, g.op("Mul", [dir, scalar("lr")], `${p}.lr`)], IO.updated(p)));
    }
  }
  return scalars;
}
