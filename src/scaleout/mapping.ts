/**
 * Every config key -> the timm 1.0.x train.py arguments that train the same run, or why there are
 * none. One rule per key of the config schema (a test walks the schema against RULES, so a new key
 * cannot be left out). Sources: timm v1.0.28 train.py (argparse; create_model gets no img_size, so
 * it goes in --model-kwargs too), timm.optim / timm.scheduler factories, TokenDistillationTask.
 */

import * as fs from "node:fs";
import * as path from "node:path";
import { findPreset, type PresetArch } from "../config/presets.js";
import type { Config } from "../config/schema.js";
import { ConfigError } from "../errors.js";
import type { BatchSplit } from "./batch.js";
import type { DataPlan } from "./data_plan.js";
import type { PretrainedPlan } from "./pretrained.js";
import { shellLine } from "./shell.js";

export interface TimmArg {
  flag: string;
  values: string[];
}

/** What one key contributes: arguments, `--model-kwargs` entries, and a note (required without either). */
export interface KeyMapping {
  args?: TimmArg[];
  kwargs?: string[];
  note?: string;
}

export interface MapContext {
  cfg: Config;
  numClasses: number;
  /** timm's registered architecture the run builds (with --model-kwargs for what differs). */
  arch: string;
  data: DataPlan;
  batch: BatchSplit;
  pretrained: PretrainedPlan | null;
  /** Where the teacher exported in timm format is (for `local-dir:`). */
  teacherDir: string;
  /** `vit data export` as the user should run it, when the data must be exported. */
  exportCommand: string;
  /** The one-process CPU check: one loader worker. */
  cpu: boolean;
}

type Rule = (c: MapContext) => KeyMapping;

/** A number as Python's float()/int() read it back exactly (shortest round-trip form). */
function num(x: number): string {
  return String(x);
}

function arg(flag: string, ...values: (string | number)[]): TimmArg {
  return { flag, values: values.map((v) => (typeof v === "number" ? num(v) : v)) };
}

/** A `--model-kwargs` value as timm's ParseKwargs reads it (ast.literal_eval, else the bare string). */
function kwarg(key: string, value: number | boolean | string): string {
  const text = typeof value === "boolean" ? (value ? "True" : "False") : String(value);
  return `${key}=${text}`;
}

/** The architecture values timm's entry point sets (timm's VisionTransformer defaults under them). */
function archDefault(c: MapContext) {
  return { qkv_bias: true, class_token: true, global_pool: "token", ...findPreset(c.arch)?.model };
}

/** An architecture key: a --model-kwargs entry when it differs from the timm architecture's. */
function archKey(key: Exclude<keyof PresetArch, "img_size" | "in_chans" | "distilled">): Rule {
  return (c) => {
    const value = c.cfg.model[key];
    if (archDefault(c)[key] === value) return { note: `${c.arch} already has ${key} ${value}` };
    return { kwargs: [kwarg(key, value)] };
  };
}

const isStep = (c: MapContext) => c.cfg.train.schedule.name === "step";
const isAdamw = (c: MapContext) => c.cfg.train.optimizer.name === "adamw";

function dataSplitNote(c: MapContext): string {
  return c.data.exportReason
    ? `write it first: ${c.exportCommand} (${c.data.exportReason})`
    : "timm reads the folder as it is";
}

const distillOff = "no distillation (distill: null or type none)";
const distills = (c: MapContext) => c.cfg.distill !== null && c.cfg.distill.type !== "none";

export const RULES: Readonly<Record<string, Rule>> = {
  name: (c) => ({
    args: [arg("--experiment", `${c.cfg.name}-timm`)],
    note: "timm's run folder is <output.dir>/<name>-timm, next to vit's",
  }),

  "model.preset": (c) => ({
    args: [arg("--model", c.arch)],
    note:
      c.cfg.model.preset === c.arch
        ? "a timm model"
        : `${c.cfg.model.preset ?? "no preset"} is not a timm model: its nearest timm architecture, sizes in --model-kwargs (as vit export --format timm)`,
  }),
  "model.img_size": (c) => ({
    args: [arg("--img-size", c.cfg.model.img_size)],
    kwargs: archDefault(c).img_size === c.cfg.model.img_size ? [] : [kwarg("img_size", c.cfg.model.img_size)],
    note: "--img-size sizes the data; create_model only gets it through --model-kwargs",
  }),
  "model.patch_size": archKey("patch_size"),
  "model.in_chans": (c) => ({
    args: [arg("--in-chans", c.cfg.model.in_chans)],
    note: c.cfg.model.in_chans === 1 ? "timm then reads images in mode L (grey), as vit" : "",
  }),
  "model.num_classes": (c) => ({
    args: [arg("--num-classes", c.numClasses)],
    note: c.cfg.model.num_classes === null ? `the data's ${c.numClasses} classes` : "",
  }),
  "model.embed_dim": archKey("embed_dim"),
  "model.depth": archKey("depth"),
  "model.num_heads": archKey("num_heads"),
  "model.mlp_ratio": archKey("mlp_ratio"),
  "model.qkv_bias": archKey("qkv_bias"),
  "model.class_token": archKey("class_token"),
  "model.global_pool": archKey("global_pool"),
  "model.representation_size": () => ({
    note: "null: no pre-logits layer (timm 1.0 has none; a value is refused before this table)",
  }),
  "model.distilled": (c) => ({
    note: !c.cfg.model.distilled
      ? "a plain ViT"
      : distills(c)
        ? `--model ${c.arch}: the distillation token and head; timm trains them with --kd-distill-type token`
        : "differs: without distillation timm trains the mean of both heads on the labels; vit trains the class head only",
  }),
  "model.drop_rate": (c) => {
    const p = c.cfg.model.drop_rate;
    const note =
      "vit's drop_rate is the position and projection dropout: timm's pos_drop_rate + proj_drop_rate (timm's --drop is head dropout)";
    return p === 0
      ? { note: "0: no dropout (timm's default)" }
      : { kwargs: [kwarg("pos_drop_rate", p), kwarg("proj_drop_rate", p)], note };
  },
  "model.attn_drop_rate": (c) =>
    c.cfg.model.attn_drop_rate === 0
      ? { note: "0: timm's default" }
      : { kwargs: [kwarg("attn_drop_rate", c.cfg.model.attn_drop_rate)] },
  "model.drop_path_rate": (c) => ({ args: [arg("--drop-path", c.cfg.model.drop_path_rate)] }),
  "model.weight_init": (c) =>
    c.cfg.model.weight_init === "jax"
      ? { kwargs: [kwarg("weight_init", "jax")], note: "the same scheme, other random numbers" }
      : { note: "timm's default init (same scheme, other random numbers)" },
  "model.pretrained": (c) =>
    c.pretrained
      ? { args: c.pretrained.args, note: c.pretrained.note }
      : { note: "null: trained from scratch" },

  "data.train": (c) => ({
    args: [
      arg("--data-dir", c.data.dataDir),
      arg("--train-split", c.data.trainSplit),
      ...(c.data.classMap ? [arg("--class-map", c.data.classMap)] : []),
    ],
    note: dataSplitNote(c),
  }),
  "data.val": (c) => ({ args: [arg("--val-split", c.data.valSplit)], note: dataSplitNote(c) }),
  "data.val_split": (c) => ({
    note: c.cfg.data.val
      ? "unused: data.val is given"
      : `held out by vit data export into ${c.data.valSplit}/ (stratified, seed train.seed, as vit train)`,
  }),
  "data.mean": (c) => ({ args: [arg("--mean", ...c.cfg.data.mean)] }),
  "data.std": (c) => ({ args: [arg("--std", ...c.cfg.data.std)] }),
  "data.crop_pct": (c) => ({ args: [arg("--crop-pct", c.cfg.data.crop_pct)] }),
  "data.interpolation": (c) => ({
    args: [
      arg("--interpolation", c.cfg.data.interpolation),
      arg("--train-interpolation", c.cfg.data.interpolation),
    ],
    note: "vit crops for training with the same kernel (timm's default would pick one at random)",
  }),
  "data.on_bad_image": (c) => ({
    note:
      c.cfg.data.on_bad_image === "skip"
        ? "differs: timm stops at an unreadable image (no skip)"
        : "timm stops too",
  }),
  "data.cache": () => ({ note: "timm reads the files each epoch (the OS page cache keeps them)" }),
  "data.workers": (c) => ({
    args: [arg("--workers", c.cpu ? 1 : c.cfg.data.workers)],
    note: c.cpu ? "the CPU check: one loader process" : "loader processes per GPU process",
  }),
  "data.prefetch": () => ({
    note: "PyTorch's DataLoader prefetches (2 batches per worker) and timm's CUDA prefetcher",
  }),
  "data.synthetic_per_class": (c) => ({
    note:
      c.cfg.data.train === "synthetic"
        ? `vit data export writes ${c.cfg.data.synthetic_per_class} images per class`
        : "unused: data.train is not synthetic",
  }),
  "data.aug.scale": (c) => ({ args: [arg("--scale", ...c.cfg.data.aug.scale)] }),
  "data.aug.ratio": (c) => ({ args: [arg("--ratio", ...c.cfg.data.aug.ratio)] }),
  "data.aug.hflip": (c) => ({ args: [arg("--hflip", c.cfg.data.aug.hflip)] }),
  "data.aug.color_jitter": (c) => ({
    args: [arg("--color-jitter", c.cfg.data.aug.color_jitter)],
    note: "explicit: timm's default is 0.4; both turn it off under RandAugment",
  }),
  "data.aug.rand_augment": (c) =>
    c.cfg.data.aug.rand_augment
      ? { args: [arg("--aa", c.cfg.data.aug.rand_augment)] }
      : { note: "null: no RandAugment (timm's default)" },
  "data.aug.random_erasing": (c) => ({
    args: [arg("--reprob", c.cfg.data.aug.random_erasing)],
    note: "timm's defaults are vit's: --remode pixel, --recount 1",
  }),
  "data.aug.mixup": (c) => ({ args: [arg("--mixup", c.cfg.data.aug.mixup)] }),
  "data.aug.cutmix": (c) => ({ args: [arg("--cutmix", c.cfg.data.aug.cutmix)] }),
  "data.aug.mixup_prob": (c) => ({ args: [arg("--mixup-prob", c.cfg.data.aug.mixup_prob)] }),
  "data.aug.mixup_switch_prob": (c) => ({
    args: [arg("--mixup-switch-prob", c.cfg.data.aug.mixup_switch_prob)],
  }),

  "train.epochs": (c) => ({ args: [arg("--epochs", c.cfg.train.epochs)] }),
  "train.batch_size": (c) => batchMapping(c),
  "train.accum_steps": (c) => batchMapping(c),
  "train.optimizer.name": (c) => {
    const { name, nesterov } = c.cfg.train.optimizer;
    if (name === "adamw") return { args: [arg("--opt", "adamw")] };
    // timm's "sgd" is Nesterov SGD; "momentum" is plain momentum SGD.
    return {
      args: [arg("--opt", nesterov ? "sgd" : "momentum")],
      note: `timm's name for SGD${nesterov ? " with" : " without"} Nesterov`,
    };
  },
  "train.optimizer.lr": (c) => ({
    args: [arg("--lr", c.cfg.train.optimizer.lr)],
    note: "absolute: timm scales --lr-base by the batch only when --lr is not given",
  }),
  "train.optimizer.weight_decay": (c) => ({
    args: [arg("--weight-decay", c.cfg.train.optimizer.weight_decay)],
    note: "both skip biases, norms, tokens and pos_embed",
  }),
  "train.optimizer.betas": (c) =>
    isAdamw(c) ? { args: [arg("--opt-betas", ...c.cfg.train.optimizer.betas)] } : { note: "unused by SGD" },
  "train.optimizer.eps": (c) =>
    isAdamw(c) ? { args: [arg("--opt-eps", c.cfg.train.optimizer.eps)] } : { note: "unused by SGD" },
  "train.optimizer.momentum": (c) =>
    isAdamw(c) ? { note: "unused by AdamW" } : { args: [arg("--momentum", c.cfg.train.optimizer.momentum)] },
  "train.optimizer.nesterov": (c) =>
    isAdamw(c)
      ? { note: "unused by AdamW" }
      : { note: "in the --opt name (sgd: Nesterov, momentum: without)" },
  "train.schedule.name": (c) => {
    const onUpdates = arg("--sched-on-updates");
    const note = "--sched-on-updates: vit sets the lr every update, so does timm then";
    if (c.cfg.train.schedule.name === "constant") {
      return {
        args: [arg("--sched", "step"), arg("--decay-rate", 1), onUpdates],
        note: `timm has no constant schedule: a step schedule that decays by 1; ${note}`,
      };
    }
    return { args: [arg("--sched", c.cfg.train.schedule.name), onUpdates], note };
  },
  "train.schedule.warmup_epochs": (c) => {
    const w = c.cfg.train.schedule.warmup_epochs;
    if (Number.isInteger(w)) return { args: [arg("--warmup-epochs", w)] };
    return {
      args: [arg("--warmup-epochs", Math.round(w))],
      note: `differs: timm's --warmup-epochs is an integer, ${w} rounded to ${Math.round(w)}`,
    };
  },
  "train.schedule.warmup_lr": (c) => ({ args: [arg("--warmup-lr", c.cfg.train.schedule.warmup_lr)] }),
  "train.schedule.min_lr": (c) => ({ args: [arg("--min-lr", c.cfg.train.schedule.min_lr)] }),
  "train.schedule.decay_epochs": (c) =>
    isStep(c)
      ? { args: [arg("--decay-epochs", c.cfg.train.schedule.decay_epochs)] }
      : { note: "unused: not the step schedule" },
  "train.schedule.decay_rate": (c) =>
    isStep(c)
      ? { args: [arg("--decay-rate", c.cfg.train.schedule.decay_rate)] }
      : { note: "unused: not the step schedule" },
  "train.label_smoothing": (c) => ({ args: [arg("--smoothing", c.cfg.train.label_smoothing)] }),
  "train.clip_grad_norm": (c) =>
    c.cfg.train.clip_grad_norm === null
      ? { note: "null: no clipping (timm's default)" }
      : {
          args: [arg("--clip-grad", c.cfg.train.clip_grad_norm)],
          note: "the global norm (timm's --clip-mode norm)",
        },
  "train.ema.decay": (c) =>
    c.cfg.train.ema
      ? {
          args: [arg("--model-ema"), arg("--model-ema-decay", c.cfg.train.ema.decay)],
          note: "every update, no warmup; timm validates the EMA too and keeps it as state_dict_ema",
        }
      : { note: "train.ema: null: no EMA" },
  "train.seed": (c) => ({
    args: [arg("--seed", c.cfg.train.seed)],
    note: "same seed, other random numbers (PyTorch's)",
  }),
  "train.log_interval": (c) => ({ args: [arg("--log-interval", c.cfg.train.log_interval)] }),

  "distill.teacher": (c) => (distills(c) ? teacherMapping(c) : { note: distillOff }),
  "distill.type": (c) =>
    distills(c)
      ? {
          args: [arg("--kd-distill-type", "token"), arg("--kd-token-distill-type", c.cfg.distill!.type)],
          note: "DeiT's distillation token",
        }
      : { note: distillOff },
  "distill.alpha": (c) => (distills(c) ? distillWeights(c) : { note: distillOff }),
  "distill.tau": (c) =>
    !distills(c)
      ? { note: distillOff }
      : c.cfg.distill!.type === "soft"
        ? { args: [arg("--kd-temperature", c.cfg.distill!.tau)] }
        : { note: "unused by hard distillation" },

  "runtime.backend": () => ({ note: "timm runs on PyTorch: torchrun starts one process per GPU" }),
  "runtime.device": () => ({
    note: "each timm process takes the GPU torchrun gives it (--device for one process)",
  }),
  "runtime.threads": () => ({ note: "PyTorch sizes its own thread pools" }),
  "output.dir": (c) => ({ args: [arg("--output", c.cfg.output.dir)] }),
};

/**
 * timm builds the teacher by name; a run of this framework becomes one through `vit export --format
 * timm` into a folder (config.json + model.safetensors), which timm opens as `local-dir:<folder>`.
 */
function teacherMapping(c: MapContext): KeyMapping {
  const teacher = c.cfg.distill!.teacher;
  if (teacher.endsWith(".json") || fs.existsSync(path.join(teacher, "model.json"))) {
    throw new ConfigError(
      `distill.teacher: ${teacher} is a TensorFlow.js model, which timm cannot load: ` +
        "use a run folder or checkpoint of this framework as the teacher to train with timm",
    );
  }
  const source = teacher.endsWith(".safetensors") ? "--checkpoint" : "--run";
  return {
    args: [arg("--kd-model-name", `local-dir:${c.teacherDir}`)],
    note: `export it first: ${shellLine(["vit", "export", source, teacher, "--format", "timm", "--out", c.teacherDir])}`,
  };
}

function batchMapping(c: MapContext): KeyMapping {
  const { effective, processes, perProcess, accumSteps } = c.batch;
  return {
    args: [arg("--batch-size", perProcess), arg("--grad-accum-steps", accumSteps)],
    note: `${effective} images per update = ${perProcess} x ${processes} process(es) x ${accumSteps} accumulated`,
  };
}

/**
 * DeiT's loss is (1 - alpha) x task + alpha x distill. timm's hard term is the same cross-entropy;
 * its soft term is KL with reduction "batchmean", where DeiT divides the summed KL by the number of
 * logits (batch x classes): timm's is num_classes times larger, so its weight is alpha / num_classes.
 */
export function distillWeights(c: Pick<MapContext, "cfg" | "numClasses">): KeyMapping {
  const { type, alpha } = c.cfg.distill!;
  // toPrecision drops float noise (1 - 0.7 = 0.30000000000000004) from the printed weights.
  const clean = (x: number) => Number(x.toPrecision(12));
  const distill = type === "soft" ? alpha / c.numClasses : alpha;
  return {
    args: [arg("--task-loss-weight", clean(1 - alpha)), arg("--distill-loss-weight", clean(distill))],
    note:
      type === "soft"
        ? `alpha / ${c.numClasses} classes: timm's soft KL is per sample, DeiT's per logit`
        : "(1 - alpha) x CE(class head) + alpha x CE(dist head, teacher argmax)",
  };
}
