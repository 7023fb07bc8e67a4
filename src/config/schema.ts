/**
 * The config contract (docs/design.md "Config"): one zod strict schema per section, with defaults
 * and ranges. Every TypeScript config type in the project is inferred from here.
 */
import { z } from "zod";

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const probability = z.number().min(0).max(1);
/** Drop rates: a rate of 1 would drop everything, so the range is [0, 1). */
const dropRate = z.number().min(0).lt(1);
const positive = z.number().positive();
const triple = z.array(z.number()).min(1).max(4);

export const interpolations = ["bicubic", "bilinear", "nearest"] as const;

export const ModelConfigSchema = z.strictObject({
  preset: z.string().nullable().default(null),
  img_size: positiveInt.default(224),
  patch_size: positiveInt.default(16),
  in_chans: z.union([z.literal(1), z.literal(3)]).default(3),
  /** null: taken from the data's classes. 0: features only (no head). */
  num_classes: nonNegativeInt.nullable().default(null),
  embed_dim: positiveInt.default(192),
  depth: positiveInt.default(12),
  num_heads: positiveInt.default(3),
  mlp_ratio: positive.default(4),
  qkv_bias: z.boolean().default(true),
  class_token: z.boolean().default(true),
  global_pool: z.enum(["token", "avg"]).default("token"),
  representation_size: positiveInt.nullable().default(null),
  distilled: z.boolean().default(false),
  drop_rate: dropRate.default(0),
  attn_drop_rate: dropRate.default(0),
  drop_path_rate: dropRate.default(0.1),
  weight_init: z.enum(["timm", "jax"]).default("timm"),
  pretrained: z.string().nullable().default(null),
});

export const AugConfigSchema = z.strictObject({
  scale: z.tuple([probability, probability]).default([0.08, 1.0]),
  ratio: z.tuple([positive, positive]).default([0.75, 1.3333]),
  hflip: probability.default(0.5),
  color_jitter: z.number().min(0).default(0),
  /** timm's RandAugment string, e.g. "rand-m9-mstd0.5". */
  rand_augment: z
    .string()
    .regex(/^rand(-[a-z]+[0-9.]+)*$/, 'expected a RandAugment string like "rand-m9-mstd0.5"')
    .nullable()
    .default(null),
  random_erasing: probability.default(0),
  mixup: z.number().min(0).default(0),
  cutmix: z.number().min(0).default(0),
  mixup_prob: probability.default(1),
  mixup_switch_prob: probability.default(0.5),
});

export const DataConfigSchema = z.strictObject({
  /** An ImageFolder directory, a CSV manifest (path,label), or "synthetic". */
  train: z.string().min(1).default("synthetic"),
  val: z.string().min(1).nullable().default(null),
  val_split: z.number().min(0).lt(1).default(0.1),
  mean: triple.default([0.485, 0.456, 0.406]),
  std: z.array(positive).min(1).max(4).default([0.229, 0.224, 0.225]),
  crop_pct: z.number().positive().max(1).default(0.875),
  interpolation: z.enum(interpolations).default("bicubic"),
  on_bad_image: z.enum(["skip", "fail"]).default("skip"),
  cache: z.boolean().default(false),
  /** Images decoded concurrently by the loader. */
  workers: positiveInt.default(2),
  /** Batches decoded ahead of the training step. */
  prefetch: positiveInt.default(2),
  /** Size of the built-in synthetic dataset (images per class). */
  synthetic_per_class: positiveInt.default(200),
  aug: AugConfigSchema.prefault({}),
});

export const OptimizerConfigSchema = z.strictObject({
  name: z.enum(["adamw", "sgd"]).default("adamw"),
  lr: positive.default(5e-4),
  weight_decay: z.number().min(0).default(0.05),
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
  eps: positive.default(1e-8),
  momentum: z.number().min(0).lt(1).default(0.9),
  nesterov: z.boolean().default(false),
});

export const ScheduleConfigSchema = z.strictObject({
  name: z.enum(["cosine", "step", "constant"]).default("cosine"),
  warmup_epochs: z.number().min(0).default(1),
  warmup_lr: z.number().min(0).default(1e-6),
  min_lr: z.number().min(0).default(1e-5),
  /** step schedule: multiply the lr by decay_rate every decay_epochs. */
  decay_epochs: positive.default(30),
  decay_rate: positive.default(0.1),
});

export const EmaConfigSchema = z.strictObject({
  decay: z.number().positive().lt(1).default(0.9998),
});

export const TrainConfigSchema = z.strictObject({
  epochs: positiveInt.default(10),
  batch_size: positiveInt.default(64),
  accum_steps: positiveInt.default(1),
  optimizer: OptimizerConfigSchema.prefault({}),
  schedule: ScheduleConfigSchema.prefault({}),
  label_smoothing: z.number().min(0).lt(1).default(0.1),
  clip_grad_norm: positive.nullable().default(null),
  ema: EmaConfigSchema.nullable().default(null),
  seed: nonNegativeInt.default(0),
  /** Steps between progress lines and metrics.jsonl step records. */
  log_interval: positiveInt.default(10),
});

export const DistillConfigSchema = z.strictObject({
  /** A run folder or checkpoint of this framework, or a tfjs model.json folder. */
  teacher: z.string().min(1),
  type: z.enum(["none", "soft", "hard"]).default("hard"),
  alpha: probability.default(0.5),
  tau: positive.default(1.0),
});

/** auto, onnxruntime (its own engine), and the tfjs backends (docs/engines.md). */
export const backendNames = ["auto", "onnxruntime", "tensorflow", "wasm", "cpu"] as const;
export const deviceNames = ["auto", "cpu", "webgpu", "cuda"] as const;

export const RuntimeConfigSchema = z.strictObject({
  backend: z.enum(backendNames).default("auto"),
  /** wasm and onnxruntime threads; null: one per core (os.availableParallelism()). */
  threads: positiveInt.nullable().default(null),
  /**
   * onnxruntime's device (src/engines/onnxruntime/device.ts): auto takes a hardware WebGPU adapter
   * when there is one, else cpu; cuda needs onnxruntime-node's CUDA provider installed.
   */
  device: z.enum(deviceNames).default("auto"),
});

export const OutputConfigSchema = z.strictObject({
  dir: z.string().min(1).default("runs"),
});

const ConfigObjectSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, "expected a folder name (letters, digits, . _ -)")
    .default("run"),
  model: ModelConfigSchema.prefault({}),
  data: DataConfigSchema.prefault({}),
  train: TrainConfigSchema.prefault({}),
  distill: DistillConfigSchema.nullable().default(null),
  runtime: RuntimeConfigSchema.prefault({}),
  output: OutputConfigSchema.prefault({}),
});

type ModelConfigOutput = z.infer<typeof ModelConfigSchema>;

/** The architecture checks that span several model keys, each with the key to change. */
export function modelConfigProblems(
  m: ModelConfigOutput,
): Array<{ key: keyof ModelConfigOutput; message: string }> {
  const problems: Array<{ key: keyof ModelConfigOutput; message: string; bad: boolean }> = [
    {
      key: "num_heads",
      message: `embed_dim ${m.embed_dim} is not divisible by num_heads ${m.num_heads}`,
      bad: m.embed_dim % m.num_heads !== 0,
    },
    {
      key: "patch_size",
      message: `img_size ${m.img_size} is not a multiple of patch_size ${m.patch_size}`,
      bad: m.img_size % m.patch_size !== 0,
    },
    {
      key: "class_token",
      message: "global_pool: token needs class_token: true (or use global_pool: avg)",
      bad: m.global_pool === "token" && !m.class_token,
    },
    {
      key: "distilled",
      message: "distilled: true needs class_token: true",
      bad: m.distilled && !m.class_token,
    },
    {
      key: "global_pool",
      message: "a distilled model pools its cls and dist tokens; use global_pool: token",
      bad: m.distilled && m.global_pool !== "token",
    },
    {
      key: "representation_size",
      message: "a distilled model has no pre-logits layer; set it to null",
      bad: m.distilled && m.representation_size !== null,
    },
  ];
  return problems.filter((p) => p.bad).map(({ key, message }) => ({ key, message }));
}

/** Checks that span several keys; each names the key to change. */
export const ConfigSchema = ConfigObjectSchema.superRefine((cfg, ctx) => {
  const m = cfg.model;
  for (const { key, message } of modelConfigProblems(m)) {
    ctx.addIssue({ code: "custom", path: ["model", key], message });
  }
  if (cfg.distill && cfg.distill.type !== "none" && !m.distilled) {
    ctx.addIssue({
      code: "custom",
      path: ["distill", "type"],
      message: `distill.type ${cfg.distill.type} needs model.distilled: true (the student's distillation head)`,
    });
  }
  for (const key of ["mean", "std"] as const) {
    if (cfg.data[key].length !== m.in_chans) {
      ctx.addIssue({
        code: "custom",
        path: ["data", key],
        message: `has ${cfg.data[key].length} values but model.in_chans is ${m.in_chans}`,
      });
    }
  }
  const [lo, hi] = cfg.data.aug.scale;
  if (lo > hi) {
    ctx.addIssue({
      code: "custom",
      path: ["data", "aug", "scale"],
      message: `min ${lo} is greater than max ${hi}`,
    });
  }
});

export type Config = z.infer<typeof ConfigSchema>;
/** What a user writes: every key optional. */
export type ConfigInput = z.input<typeof ConfigSchema>;
export type ModelConfig = Config["model"];
export type DataConfig = Config["data"];
export type AugConfig = DataConfig["aug"];
export type TrainConfig = Config["train"];
export type OptimizerConfig = TrainConfig["optimizer"];
export type ScheduleConfig = TrainConfig["schedule"];
export type DistillConfig = NonNullable<Config["distill"]>;
export type BackendName = (typeof backendNames)[number];
/** The names tfjs backend selection (src/engines/tfjs/select.ts) takes. */
export type TfjsBackendName = Exclude<BackendName, "onnxruntime">;
export type DeviceName = (typeof deviceNames)[number];
