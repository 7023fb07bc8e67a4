/**
 * `vit timm-command`: every config key mapped or named as unmapped (walking the zod schema), every
 * printed flag and value accepted by timm v1.0.28 train.py's parser (test/fixtures/timm, extracted
 * from timm's source), the batch / lr / schedule arithmetic against timm's formulas, the
 * distillation weights against DeiT's loss, and a printed line the shell reads back word for word.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { keysAt } from "../src/config/format.js";
import { loadConfig } from "../src/config/index.js";
import { type Config, ConfigSchema } from "../src/config/schema.js";
import { ConfigError, UsageError } from "../src/errors.js";
import { writeSafetensors } from "../src/io/safetensors.js";
import { VisionTransformer } from "../src/model/vision_transformer.js";
import { splitBatch } from "../src/scaleout/batch.js";
import { type TimmCommandOptions, timmCommand } from "../src/scaleout/command.js";
import { RULES } from "../src/scaleout/mapping.js";
import { shellLine, shellQuote } from "../src/scaleout/shell.js";
import { naturalCompare } from "../src/scaleout/timm_folder.js";
import { softDistillationLoss } from "../src/train/distill.js";
import { makeSchedule } from "../src/train/schedule.js";
import { ROOT, runVit } from "./support.js";

const CONFIGS = path.join(ROOT, "configs");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vit-scaleout-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface TimmFlag {
  type: string;
  nargs: string;
  choices: string[];
}

/** timm v1.0.28 train.py's options (fixture header says how it was extracted). */
const TIMM_FLAGS: ReadonlyMap<string, TimmFlag> = new Map(
  fs
    .readFileSync(path.join(ROOT, "test/fixtures/timm/train_args_v1.0.28.tsv"), "utf8")
    .split("\n")
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const [flag, type, nargs, choices] = l.split("\t");
      return [flag, { type, nargs, choices: choices ? choices.split(",") : [] }];
    }),
);

/** Python float() / int() accept these; argparse rejects anything else for a typed option. */
const PY_FLOAT = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;
const PY_INT = /^[-+]?\d+$/;

/** The train.py part of argv as flag -> values, failing on anything train.py's parser would refuse. */
function parseTimmArgs(argv: readonly string[]): Map<string, string[]> {
  const start = argv.findIndex((a) => a.endsWith("train.py"));
  assert.ok(start > 0, `no train.py in ${argv.join(" ")}`);
  const parsed = new Map<string, string[]>();
  let flag: string | null = null;
  for (const word of argv.slice(start + 1)) {
    if (word.startsWith("-")) {
      assert.ok(TIMM_FLAGS.has(word), `${word} is not an option of timm 1.0.28 train.py`);
      assert.ok(!parsed.has(word), `${word} is given twice`);
      parsed.set(word, []);
      flag = word;
    } else {
      assert.ok(flag, `"${word}" comes before any flag`);
      parsed.get(flag)!.push(word);
    }
  }
  for (const [f, values] of parsed) {
    const spec = TIMM_FLAGS.get(f)!;
    const n = values.length;
    const nargsOk = { "0": n === 0, "1": n === 1, "3": n === 3, "+": n >= 1, "*": true, "?": n <= 1 }[
      spec.nargs
    ];
    assert.ok(nargsOk, `${f} takes nargs ${spec.nargs}, got ${n} value(s): ${values.join(" ")}`);
    for (const v of values) {
      if (spec.type === "int") assert.match(v, PY_INT, `${f} needs an int, got ${v}`);
      if (spec.type === "float") assert.match(v, PY_FLOAT, `${f} needs a float, got ${v}`);
      if (spec.type === "kwargs") assert.equal(v.split("=").length, 2, `${f}: ${v} is not key=value`);
      if (spec.choices.length > 0)
        assert.ok(spec.choices.includes(v), `${f}: ${v} is not one of ${spec.choices}`);
    }
  }
  return parsed;
}

/** The config as a test builds it: a YAML file in the temp folder, then --set. */
function config(yaml: string, set: string[] = []): { cfg: Config; file: string } {
  const file = path.join(tmp, `c${Math.random().toString(36).slice(2)}.yaml`);
  fs.writeFileSync(file, yaml);
  return { cfg: loadConfig(file, { set }), file };
}

function command(cfg: Config, opts: Partial<TimmCommandOptions> = {}) {
  const cmd = timmCommand(cfg, { configFile: "x.yaml", ...opts });
  return { ...cmd, args: parseTimmArgs(cmd.argv) };
}

/** Every leaf key of the config schema, as "a.b.c" (nullable sections included). */
function schemaLeaves(prefix: string[] = []): string[] {
  const keys = keysAt(ConfigSchema, prefix);
  if (keys.length === 0) return [prefix.join(".")];
  return keys.flatMap((k) => schemaLeaves([...prefix, k]));
}

/** A config of configs/ as the test can load it here: placeholder data paths need a class count. */
function shippedConfig(name: string): Config {
  const file = path.join(CONFIGS, name);
  const cfg = loadConfig(file);
  const missing = cfg.data.train !== "synthetic" && !fs.existsSync(cfg.data.train);
  return missing && cfg.model.num_classes === null
    ? loadConfig(file, { set: ["model.num_classes=1000"] })
    : cfg;
}

const SHIPPED = fs.readdirSync(CONFIGS).filter((f) => f.endsWith(".yaml"));

describe("mapping of every config key", () => {
  test("RULES has exactly the schema's keys, so a new key cannot be forgotten", () => {
    assert.deepEqual(Object.keys(RULES).toSorted(), schemaLeaves().toSorted());
  });

  test("every key gives timm arguments or says why it has none, on every shipped config", () => {
    assert.ok(SHIPPED.length >= 5);
    for (const name of SHIPPED) {
      const { rows } = command(shippedConfig(name));
      for (const row of rows) {
        assert.ok(
          row.timm !== "-" || row.note.length > 0,
          `${name}: ${row.key} has neither an argument nor a note`,
        );
      }
    }
  });

  for (const name of SHIPPED) {
    test(`${name}: every printed flag and value is one timm 1.0.28 train.py accepts (CPU, multi-node)`, () => {
      const cfg = shippedConfig(name);
      command(cfg, { cpu: true });
      // The most GPUs, up to 8 x 4, the config's batch splits over (the quickstart's 16 cannot go to 32).
      const world = [32, 16, 8, 4, 2].find((w) => (cfg.train.batch_size * cfg.train.accum_steps) % w === 0)!;
      const nprocPerNode = Math.min(8, world);
      command(cfg, { nprocPerNode, nnodes: world / nprocPerNode, rdzvEndpoint: "node0:29500" });
    });
  }

  test("the quickstart: the micro ViT as timm's vit_tiny with its sizes in --model-kwargs, img_size included", () => {
    const { args } = command(shippedConfig("quickstart.yaml"));
    assert.deepEqual(args.get("--model"), ["vit_tiny_patch16_224"]);
    assert.deepEqual(args.get("--img-size"), ["32"]);
    // create_model never sees --img-size: without img_size here timm builds a 224 px model.
    assert.deepEqual(args.get("--model-kwargs"), [
      "img_size=32",
      "patch_size=8",
      "embed_dim=96",
      "depth=4",
      "mlp_ratio=2",
    ]);
    assert.deepEqual(args.get("--num-classes"), ["10"]);
    assert.deepEqual(args.get("--color-jitter"), ["0"], "timm's default 0.4 must be overridden");
    assert.deepEqual(args.get("--train-interpolation"), ["bicubic"]);
    assert.deepEqual(args.get("--data-dir"), [path.join("timm-data", "quickstart")]);
    assert.deepEqual(args.get("--class-map"), [path.join("timm-data", "quickstart", "class_map.txt")]);
  });

  test("deit_tiny: a timm model needs no --model-kwargs; EMA, RandAugment, mixup and erasing map", () => {
    const { args } = command(shippedConfig("deit_tiny_patch16_224.yaml"));
    assert.deepEqual(args.get("--model"), ["deit_tiny_patch16_224"]);
    assert.equal(args.has("--model-kwargs"), false);
    assert.deepEqual(args.get("--model-ema-decay"), ["0.99996"]);
    assert.deepEqual(args.get("--aa"), ["rand-m9-mstd0.5"]);
    assert.deepEqual(args.get("--reprob"), ["0.25"]);
    assert.deepEqual(args.get("--mixup"), ["0.8"]);
    assert.deepEqual(args.get("--cutmix"), ["1"]);
    assert.deepEqual(args.get("--smoothing"), ["0.1"]);
  });

  test("dropout: vit's drop_rate is timm's pos and proj dropout, not --drop (head dropout)", () => {
    const { cfg } = config(
      "model: {preset: vit_micro_patch8_32, drop_rate: 0.1, attn_drop_rate: 0.05, weight_init: jax}\n",
    );
    const { args } = command(cfg);
    assert.equal(args.has("--drop"), false);
    const kwargs = args.get("--model-kwargs")!;
    for (const k of ["pos_drop_rate=0.1", "proj_drop_rate=0.1", "attn_drop_rate=0.05", "weight_init=jax"]) {
      assert.ok(kwargs.includes(k), `${k} in ${kwargs}`);
    }
  });

  test("booleans reach --model-kwargs as Python literals", () => {
    const { cfg } = config("model: {preset: vit_micro_patch8_32, qkv_bias: false, global_pool: avg}\n");
    const kwargs = command(cfg).args.get("--model-kwargs")!;
    assert.ok(kwargs.includes("qkv_bias=False"));
    assert.ok(kwargs.includes("global_pool=avg"));
  });

  test("a model timm cannot build and a class count nobody knows are refused with the fix", () => {
    const { cfg } = config("model: {preset: vit_micro_patch8_32, representation_size: 64}\n");
    assert.throws(
      () => command(cfg),
      (e: Error) => e instanceof ConfigError && /representation_size.*null/.test(e.message),
    );
    const absent = config("data: {train: /nonexistent/train, val: /nonexistent/val}\n").cfg;
    assert.throws(
      () => command(absent),
      (e: Error) => e instanceof ConfigError && /--set model.num_classes=/.test(e.message),
    );
  });

  test("more than one node needs the rendezvous address; the CPU check is one process", () => {
    const cfg = shippedConfig("quickstart.yaml");
    assert.throws(
      () => command(cfg, { nnodes: 2 }),
      (e: Error) => e instanceof UsageError && /--rdzv-endpoint/.test(e.message),
    );
    assert.throws(() => command(cfg, { cpu: true, nprocPerNode: 2 }), UsageError);
    const cpu = command(cfg, { cpu: true });
    assert.equal(cpu.argv[0], "python3");
    assert.deepEqual(cpu.args.get("--device"), ["cpu"]);
    assert.deepEqual(cpu.args.get("--no-prefetcher"), []);
    const multi = command(cfg, { nprocPerNode: 8, nnodes: 2, rdzvEndpoint: "node0:29500" });
    assert.deepEqual(multi.argv.slice(0, 5), ["torchrun", "--nnodes", "2", "--nproc_per_node", "8"]);
  });
});

describe("model.pretrained", () => {
  /** A timm-named file with the micro ViT's tensors, `classes` wide in the head. */
  function weightsFile(name: string, classes: number, rename?: (k: string) => string): string {
    const { cfg } = config("model: vit_micro_patch8_32\n");
    const shapes = new VisionTransformer({ ...cfg.model, num_classes: classes }).paramShapes();
    const tensors = new Map(
      [...shapes].map(([k, shape]) => [
        rename ? rename(k) : k,
        { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) },
      ]),
    );
    const file = path.join(tmp, name);
    writeSafetensors(file, tensors);
    return file;
  }

  test("a file that fits the model exactly loads strictly with --initial-checkpoint", () => {
    const file = weightsFile("exact.safetensors", 10);
    const { args } = command(config(`model: {preset: vit_micro_patch8_32, pretrained: ${file}}\n`).cfg);
    assert.deepEqual(args.get("--initial-checkpoint"), [file]);
    assert.equal(args.has("--pretrained"), false);
  });

  test("another head (or a file not here) is a fine-tune: --pretrained --pretrained-path", () => {
    const file = weightsFile("imagenet.safetensors", 1000);
    for (const source of [file, "/nonexistent/vit.safetensors"]) {
      const { args, rows } = command(
        config(`model: {preset: vit_micro_patch8_32, pretrained: ${source}}\n`).cfg,
      );
      assert.deepEqual(args.get("--pretrained"), []);
      assert.deepEqual(args.get("--pretrained-path"), [source]);
      assert.equal(args.has("--initial-checkpoint"), false);
      assert.match(rows.find((r) => r.key === "model.pretrained")!.note, /re-initialises the head/);
    }
  });

  test("weights without timm's names are refused with the vit import line", () => {
    const file = weightsFile("hf.safetensors", 10, (k) => `vit.${k}`);
    const { cfg } = config(`model: {preset: vit_micro_patch8_32, pretrained: ${file}}\n`);
    assert.throws(
      () => command(cfg),
      (e: Error) => e instanceof ConfigError && /vit import/.test(e.message),
    );
  });
});

describe("data for timm", () => {
  function folder(root: string, classes: string[]): void {
    for (const split of ["train", "val"]) {
      for (const c of classes) {
        fs.mkdirSync(path.join(root, split, c), { recursive: true });
        fs.writeFileSync(path.join(root, split, c, "a.png"), "");
      }
    }
  }

  test("train and val folders side by side are read in place, no class map", () => {
    const root = path.join(tmp, "imagefolder");
    folder(root, ["cat", "dog"]);
    const { cfg } = config(`data: {train: ${root}/train, val: ${root}/val}\n`);
    const { args, rows } = command(cfg);
    assert.deepEqual(args.get("--data-dir"), [root]);
    assert.deepEqual(args.get("--train-split"), ["train"]);
    assert.deepEqual(args.get("--val-split"), ["val"]);
    assert.equal(args.has("--class-map"), false);
    assert.deepEqual(args.get("--num-classes"), ["2"]);
    assert.match(rows.find((r) => r.key === "data.train")!.note, /as it is/);
  });

  test("classes timm would number differently, a val_split and a CSV go through vit data export", () => {
    const root = path.join(tmp, "natural");
    folder(root, ["class10", "class2"]); // code points: class10 < class2; timm: class2 < class10
    const cases = [
      `data: {train: ${root}/train, val: ${root}/val}\n`,
      `data: {train: ${root}/train, val: null}\n`,
      "data: {train: synthetic}\n",
    ];
    for (const yaml of cases) {
      const { args, rows } = command(config(yaml).cfg);
      assert.deepEqual(args.get("--train-split"), ["train"]);
      assert.deepEqual(args.get("--val-split"), ["val"]);
      assert.ok(args.get("--class-map")![0].endsWith("class_map.txt"));
      assert.match(rows.find((r) => r.key === "data.train")!.note, /vit data export --config x\.yaml --out/);
    }
  });

  test("images in sub-folders of a class go through vit data export (timm labels by the leaf folder)", () => {
    const root = path.join(tmp, "nested");
    folder(root, ["cat", "dog"]);
    fs.mkdirSync(path.join(root, "train", "cat", "indoor"));
    fs.writeFileSync(path.join(root, "train", "cat", "indoor", "b.png"), "");
    const { args, rows } = command(config(`data: {train: ${root}/train, val: ${root}/val}\n`).cfg);
    assert.ok(args.has("--class-map"));
    assert.match(rows.find((r) => r.key === "data.train")!.note, /by its sub-folder/);
  });

  test("natural order is timm's natural_key: digit runs as numbers, case-blind", () => {
    assert.deepEqual(["b10", "B2", "a", "b1"].toSorted(naturalCompare), ["a", "b1", "B2", "b10"]);
  });
});

describe("batch, lr and schedule", () => {
  test("the effective batch is kept over processes, accumulating only as much as one device held", () => {
    assert.deepEqual(splitBatch(256, 4, 1), {
      effective: 1024,
      processes: 1,
      perProcess: 256,
      accumSteps: 4,
    });
    assert.deepEqual(splitBatch(256, 4, 32), {
      effective: 1024,
      processes: 32,
      perProcess: 32,
      accumSteps: 1,
    });
    assert.deepEqual(splitBatch(256, 4, 2), {
      effective: 1024,
      processes: 2,
      perProcess: 256,
      accumSteps: 2,
    });
    assert.deepEqual(splitBatch(10, 4, 2), { effective: 40, processes: 2, perProcess: 10, accumSteps: 2 });
    assert.deepEqual(splitBatch(16, 1, 16), { effective: 16, processes: 16, perProcess: 1, accumSteps: 1 });
    assert.throws(
      () => splitBatch(16, 1, 32),
      (e: Error) => e instanceof ConfigError && /cannot be split evenly over 32/.test(e.message),
    );
  });

  test("the printed per-process batch x processes x accumulation is the config's, on 8 x 4 GPUs", () => {
    const cfg = shippedConfig("deit_tiny_patch16_224.yaml");
    const { args } = command(cfg, { nprocPerNode: 8, nnodes: 4, rdzvEndpoint: "node0:29500" });
    const b = Number(args.get("--batch-size")![0]);
    const a = Number(args.get("--grad-accum-steps")![0]);
    assert.equal(b * 32 * a, cfg.train.batch_size * cfg.train.accum_steps);
  });

  test("timm's updates per epoch (distributed sampler, drop_last, accumulation) equal vit's", () => {
    // ImageNet-1k train on 8 x 4 GPUs, and the quickstart's 3,600 images on one process.
    for (const [n, batch, accum, procs] of [
      [1281167, 256, 4, 32],
      [3600, 16, 1, 1],
      [1281167, 256, 4, 1],
    ]) {
      const s = splitBatch(batch, accum, procs);
      const perProcess = Math.ceil(n / procs); // DistributedSampler pads to a multiple of the world size
      const timm = Math.ceil(Math.floor(perProcess / s.perProcess) / s.accumSteps);
      const vit = Math.ceil(Math.floor(n / batch) / accum);
      assert.equal(timm, vit, `${n} images, ${batch} x ${accum} on ${procs}`);
    }
  });

  /** timm's CosineLRScheduler / StepLRScheduler per update (sched_on_updates), from the printed flags. */
  function timmLr(args: Map<string, string[]>, updatesPerEpoch: number): (t: number) => number {
    const f = (flag: string) => Number(args.get(flag)![0]);
    const base = f("--lr");
    const warmupT = f("--warmup-epochs") * updatesPerEpoch;
    const warmupLr = f("--warmup-lr");
    const minLr = f("--min-lr");
    const tInitial = f("--epochs") * updatesPerEpoch;
    const sched = args.get("--sched")![0];
    return (t) => {
      if (t < warmupT) return warmupLr + (t * (base - warmupLr)) / warmupT;
      // Without --decay-epochs timm's default 90 applies (the constant schedule decays by 1 anyway).
      const decayEpochs = Number(args.get("--decay-epochs")?.[0] ?? 90);
      if (sched === "step")
        return base * f("--decay-rate") ** Math.floor(t / (decayEpochs * updatesPerEpoch));
      if (t >= tInitial) return minLr;
      return minLr + 0.5 * (base - minLr) * (1 + Math.cos((Math.PI * t) / tInitial));
    };
  }

  for (const [label, sched] of [
    ["cosine", "{name: cosine, warmup_epochs: 2, warmup_lr: 1.0e-6, min_lr: 1.0e-5}"],
    ["step", "{name: step, warmup_epochs: 1, decay_epochs: 3, decay_rate: 0.5}"],
    ["constant", "{name: constant, warmup_epochs: 1, warmup_lr: 1.0e-5}"],
  ]) {
    test(`${label}: timm's lr at every update is vit's, from an absolute --lr (no --lr-base scaling)`, () => {
      const { cfg } = config(
        `train: {epochs: 7, batch_size: 32, optimizer: {lr: 3.0e-4}, schedule: ${sched}}\n`,
      );
      const { args } = command(cfg, { nprocPerNode: 4 });
      assert.deepEqual(args.get("--lr"), ["0.0003"]);
      assert.equal(args.has("--lr-base"), false);
      assert.deepEqual(args.get("--sched-on-updates"), []);
      const upe = 37;
      const timm = timmLr(args, upe);
      const vit = makeSchedule({ schedule: cfg.train.schedule, baseLr: 3e-4, epochs: 7, stepsPerEpoch: upe });
      for (let t = 0; t < 7 * upe; t++)
        assert.ok(Math.abs(timm(t) - vit(t)) < 1e-12, `update ${t}: ${timm(t)} vs ${vit(t)}`);
    });
  }

  test("a fractional warmup is rounded for timm's integer --warmup-epochs, and the table says so", () => {
    const { cfg } = config("train: {schedule: {warmup_epochs: 0.5}}\n");
    const { args, rows } = command(cfg);
    assert.deepEqual(args.get("--warmup-epochs"), ["1"]);
    assert.match(
      rows.find((r) => r.key === "train.schedule.warmup_epochs")!.note,
      /integer, 0.5 rounded to 1/,
    );
  });

  test("SGD: timm's 'sgd' is Nesterov, 'momentum' is not", () => {
    const plain = command(config("train: {optimizer: {name: sgd, momentum: 0.8}}\n").cfg).args;
    assert.deepEqual(plain.get("--opt"), ["momentum"]);
    assert.deepEqual(plain.get("--momentum"), ["0.8"]);
    assert.equal(plain.has("--opt-betas"), false);
    const nesterov = command(config("train: {optimizer: {name: sgd, nesterov: true}}\n").cfg).args;
    assert.deepEqual(nesterov.get("--opt"), ["sgd"]);
  });
});

describe("distillation", () => {
  test("deit_distill_quickstart: token distillation, hard, from the teacher exported for local-dir:", () => {
    const { args, rows } = command(shippedConfig("deit_distill_quickstart.yaml"), {
      teacherDir: "teacher dir",
    });
    assert.deepEqual(args.get("--model"), ["deit_tiny_distilled_patch16_224"]);
    assert.deepEqual(args.get("--kd-model-name"), ["local-dir:teacher dir"]);
    assert.deepEqual(args.get("--kd-distill-type"), ["token"]);
    assert.deepEqual(args.get("--kd-token-distill-type"), ["hard"]);
    assert.deepEqual(args.get("--task-loss-weight"), ["0.5"]);
    assert.deepEqual(args.get("--distill-loss-weight"), ["0.5"]);
    assert.equal(args.has("--kd-temperature"), false);
    assert.match(
      rows.find((r) => r.key === "distill.teacher")!.note,
      /vit export --run runs\/quickstart --format timm --out 'teacher dir'/,
    );
  });

  test("a TensorFlow.js teacher cannot go to timm, and the error says so", () => {
    const tfjs = path.join(tmp, "tfjs-teacher");
    fs.mkdirSync(tfjs, { recursive: true });
    fs.writeFileSync(path.join(tfjs, "model.json"), "{}");
    const { cfg } = config(
      `model: {preset: vit_micro_patch8_32, distilled: true}\ndistill: {teacher: ${tfjs}}\n`,
    );
    assert.throws(
      () => command(cfg),
      (e: Error) => e instanceof ConfigError && /TensorFlow.js model, which timm cannot load/.test(e.message),
    );
  });

  test("soft: timm's batchmean KL x its weight equals DeiT's per-logit KL x alpha", () => {
    const { cfg } = config(
      "model: {preset: vit_micro_patch8_32, distilled: true}\ndistill: {teacher: t, type: soft, alpha: 0.3, tau: 3.0}\n",
    );
    const { args } = command(cfg);
    assert.deepEqual(args.get("--task-loss-weight"), ["0.7"]);
    assert.deepEqual(args.get("--distill-loss-weight"), ["0.03"]);
    assert.deepEqual(args.get("--kd-temperature"), ["3"]);
    const [batch, classes, tau] = [4, 10, 3];
    const s = tf.randomNormal([batch, classes], 0, 2, "float32", 1) as tf.Tensor2D;
    const t = tf.randomNormal([batch, classes], 0, 2, "float32", 2) as tf.Tensor2D;
    const deit = softDistillationLoss(s, t, tau).dataSync()[0];
    // timm TokenDistillationTask: F.kl_div(log_softmax(s/T), log_softmax(t/T), 'batchmean', log_target=True) * T^2
    const logP = tf.logSoftmax(tf.div(s, tau));
    const logQ = tf.logSoftmax(tf.div(t, tau));
    const timm = (tf.sum(tf.mul(tf.exp(logQ), tf.sub(logQ, logP))).dataSync()[0] / batch) * tau * tau;
    tf.dispose([s, t, logP, logQ]);
    const weight = Number(args.get("--distill-loss-weight")![0]);
    assert.ok(Math.abs(weight * timm - 0.3 * deit) < 1e-6, `${weight * timm} vs ${0.3 * deit}`);
  });

  test("no distillation: no --kd flags, and a distilled student without a teacher is flagged as differing", () => {
    const { args, rows } = command(config("model: {preset: vit_micro_patch8_32, distilled: true}\n").cfg);
    assert.equal(
      [...args.keys()].some((f) => f.startsWith("--kd")),
      false,
    );
    assert.match(rows.find((r) => r.key === "model.distilled")!.note, /^differs/);
  });
});

describe("the CLI", () => {
  test("vit timm-command: one line on stdout, the table on stderr, exit 0", async () => {
    const r = await runVit(
      ["timm-command", "--config", path.join(CONFIGS, "quickstart.yaml"), "--device", "cpu"],
      { cwd: tmp },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split("\n").length, 2, "one line and its newline");
    assert.match(r.stdout, /^python3 train\.py .* --device cpu /);
    assert.match(r.stderr, /^config key +value +timm train\.py/);
    assert.match(r.stderr, /train\.optimizer\.lr +0\.001 +--lr 0\.001/);
  });

  test("vit timm-command: a batch that does not split is exit 2 with the reason", async () => {
    const r = await runVit(
      ["timm-command", "--config", path.join(CONFIGS, "quickstart.yaml"), "--nproc-per-node", "32"],
      { cwd: tmp },
    );
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /cannot be split evenly over 32 processes/);
  });
});

describe("shell quoting", () => {
  test("safe words stay bare; others are single-quoted", () => {
    assert.equal(shellQuote("--data-dir"), "--data-dir");
    assert.equal(shellQuote("local-dir:/a/b.c"), "local-dir:/a/b.c");
    assert.equal(shellQuote("my data"), "'my data'");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    assert.equal(shellQuote(""), "''");
  });

  test("sh reads the printed line back to the same argv (spaces, quotes, $, globs, non-ASCII)", () => {
    const odd = ["a b", "it's", '"q"', "$HOME", "*.png", "back\\slash", "tab\there", "ünï", ""];
    const line = shellLine(["printf", "%s\\0", ...odd]);
    const out = execFileSync("sh", ["-c", line], { encoding: "utf8" });
    assert.deepEqual(out.split("\0").slice(0, -1), odd);
  });

  test("a data folder with spaces survives the whole printed command", () => {
    const { cfg } = config("name: spaced\n");
    const { line, argv } = command(cfg, {
      dataDir: "my data/it's here",
      trainPy: "pytorch image models/train.py",
    });
    const out = execFileSync("sh", ["-c", `set -- ${line}; printf '%s\\0' "$@"`], { encoding: "utf8" });
    assert.deepEqual(out.split("\0").slice(0, -1), argv);
    assert.ok(argv.includes("my data/it's here"));
  });
});
