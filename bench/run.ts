// Training and inference speed of the three ViTs on one engine, against the backend's own matMul
// speed (tfjs) and, with --compare-torch, against PyTorch on the same machine in the same run:
//
//   npm run bench -- [--backend wasm|onnxruntime|cpu|tensorflow|auto] [--threads N] [--only REGEX]
//                    [--device auto|cpu|webgpu|cuda] (onnxruntime's device; with --backend auto or
//                    onnxruntime: webgpu and cuda imply onnxruntime)
//                    [--steps 3] [--warmup 2] [--batch N] [--compare-torch SCRIPT [--python python3]]
//
// and then bench/data.ts (the data loader's images/s at 224 px) unless --only leaves out "data_loader".
//
// The three configs are defined here, named as the PyTorch baseline names them: vit-ti16-224 (timm's
// vit_tiny_patch16_224, batch 32), vit-micro (32 px, patch 4, dim 192, depth 6, 3 heads, batch 128),
// vit-fmnist (28 px greyscale, patch 4, dim 64, depth 4, 4 heads, batch 256); MLP ratio 4, drop path
// 0.1, AdamW, label-smoothed cross-entropy, 1000 / 10 / 10 classes.
//
// Each config runs in its own child process, so its peak RSS is its own (the wasm heap never shrinks)
// and one model's leftovers cannot slow the next. One JSON line per config on stdout, a summary table on
// stderr. A training step is the real one (src/train/step.ts on tfjs: forward, backward, AdamW,
// label-smoothed cross-entropy, drop path); inference is the Classifier eval and predict use (either
// engine), images uploaded from host memory at every step, as the loader's batches are.
//
// --compare-torch SCRIPT runs `PYTHON SCRIPT --configs NAME` once per config (its own process, so its
// peak RSS is its own), reads its JSON lines ({config, batch, mode: train|infer, images_per_s,
// peak_rss_mb}) and prints ours / PyTorch for train and inference img/s and peak RSS.
//
// FLOPs count the matMuls only (modelStats: patch embedding, qkv, q k^T, attn v, proj, MLP, head),
// 2 per multiply-accumulate; a training step is 3x the forward. On tfjs, "efficiency" divides the model's
// achieved GFLOP/s (its fastest step) by the backend's GFLOP/s on 1024^3 products measured in the same
// process: 8 back-to-back products, each with a new right operand as every product in training has (the
// wasm backend packs and caches a right operand by tensor id), timed together like a step; the better
// of a measurement before and one after the model. `matmul_fastest_gflops` is the fastest single one.
import { spawn } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs";
import type { Config } from "../src/config/index.js";
import { type BackendName, backendNames, type DeviceName, deviceNames } from "../src/config/schema.js";
import { createClassifier } from "../src/engines/classifier.js";
import { describeEngine, type EngineChoice, selectEngine } from "../src/engines/select.js";
import { modelStats } from "../src/model/stats.js";
import { createModel, type VisionTransformer } from "../src/model/vision_transformer.js";
import { alignTable } from "../src/plot/table.js";
import { Rng } from "../src/random.js";
import { onnxruntimeStepEngine, tfjsStepEngine } from "../src/train/engine.js";
import { classificationCriterion } from "../src/train/losses.js";
import { createTrainState } from "../src/train/state.js";
import { disposeStepResult } from "../src/train/step.js";
import { type BenchConfig, benchConfig, CONFIGS } from "./configs.js";
import { deviceReport } from "./device.js";

const { values: args } = parseArgs({
  options: {
    backend: { type: "string", default: "wasm" },
    threads: { type: "string" },
    device: { type: "string", default: "auto" },
    only: { type: "string" },
    steps: { type: "string", default: "3" },
    warmup: { type: "string", default: "2" },
    // Overrides every model's batch size (e.g. to fit a slower or hungrier build in memory).
    batch: { type: "string" },
    "compare-torch": { type: "string" },
    python: { type: "string", default: "python3" },
    child: { type: "string" },
  },
});
if (!(backendNames as readonly string[]).includes(args.backend)) {
  throw new Error(`--backend ${args.backend}: expected one of ${backendNames.join(", ")}`);
}
if (!(deviceNames as readonly string[]).includes(args.device)) {
  throw new Error(`--device ${args.device}: expected one of ${deviceNames.join(", ")}`);
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;
const best = (times: number[]) => Math.min(...times);
const median = (times: number[]) => [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];

/** Wall time of each of `reps` calls after `warm` untimed ones; `fn` must finish its work (read a result). */
async function timeCalls(fn: () => unknown, warm: number, reps: number): Promise<number[]> {
  for (let i = 0; i < warm; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return times;
}

/**
 * GFLOP/s of 1024^3 products with a new right operand each: sustained over `reps` back-to-back products
 * (like a training step, which runs for seconds) and the fastest single product.
 */
async function matMulSpeed(reps = 8): Promise<{ sustained: number; fastest: number }> {
  const n = 1024;
  const a = tf.randomNormal([n, n], 0, 1, "float32", 1);
  const b = tf.randomNormal([n, n], 0, 1, "float32", 2);
  const copies = Array.from({ length: reps + 1 }, (_, i) => tf.add(b, i * 1e-3));
  // Reading one element makes an asynchronous backend finish the product inside the timing.
  let i = 0;
  const times = await timeCalls(
    () => tf.tidy(() => tf.slice(tf.matMul(a, copies[i++]), [0, 0], [1, 1]).dataSync()),
    1,
    reps,
  );
  tf.dispose([a, b, ...copies]);
  const flops = 2 * n ** 3;
  return {
    sustained: (flops * reps) / times.reduce((x, y) => x + y) / 1e6,
    fastest: flops / best(times) / 1e6,
  };
}

function randomBatch(size: number, [h, w, c]: [number, number, number], classes: number, seed: number) {
  const rng = Rng.from(seed, "bench");
  const images = new Float32Array(size * h * w * c);
  for (let i = 0; i < images.length; i++) images[i] = rng.normal();
  const labels = Int32Array.from({ length: size }, () => Math.floor(rng.uniform() * classes));
  return { images, labels, size };
}

type Batch = ReturnType<typeof randomBatch>;

/**
 * Training steps as the loop runs them (src/train/engine.ts): on tfjs the step of src/train/step.ts, on
 * onnxruntime one session.run of the training graph; AdamW, label smoothing, the model's drop path.
 */
async function timeTraining(
  engine: EngineChoice,
  model: VisionTransformer,
  config: Config,
  batch: Batch,
  steps: number,
  warmup: number,
) {
  const cfg = model.cfg;
  const state = createTrainState(model, config.train, {
    criterion: classificationCriterion(config.train.label_smoothing),
    stepsPerEpoch: 1,
    inputShape: [cfg.img_size, cfg.img_size, cfg.in_chans],
    numClasses: cfg.num_classes,
  });
  const stepper =
    engine.engine === "onnxruntime"
      ? onnxruntimeStepEngine(state, model, config, engine)
      : tfjsStepEngine(state);
  let step = 0;
  const trainOnce = async () => {
    const r = await stepper.step([batch], step++);
    r.loss.dataSync();
    disposeStepResult(r);
  };
  try {
    await timeCalls(trainOnce, warmup, 0);
    const tensorsWarm = tf.memory().numTensors;
    const ms = await timeCalls(trainOnce, 0, steps);
    return { ms, tensorsWarm, tensorsAfter: tf.memory().numTensors };
  } finally {
    await stepper.dispose();
  }
}

async function runChild(spec: BenchConfig): Promise<void> {
  const threads = args.threads === undefined ? null : Number(args.threads);
  const engine: EngineChoice = await selectEngine(args.backend as BackendName, {
    threads,
    device: args.device as DeviceName,
  });
  const loadStart = os.loadavg()[0];
  // The default recipe (AdamW, label smoothing); the learning rate's value does not change a step's time.
  const config = benchConfig(spec);
  const cfg = config.model;
  const model = createModel(cfg, { seed: 0 });
  const inputShape: [number, number, number] = [cfg.img_size, cfg.img_size, cfg.in_chans];
  const batch = randomBatch(spec.batch, inputShape, cfg.num_classes, 0);
  const steps = Number(args.steps);
  const warmup = Number(args.warmup);
  const tfjs = engine.engine === "tfjs";

  const matmulBefore = tfjs ? await matMulSpeed() : null;
  const train = await timeTraining(engine, model, config, batch, steps, warmup);
  // The classifier owns the model from here on (onnxruntime copies the weights and frees it).
  const classifier = await createClassifier(engine, model);
  const inferMs = await timeCalls(() => classifier.predictLogits(batch.images, spec.batch), 1, steps);
  await classifier.dispose();
  const matmulAfter = tfjs ? await matMulSpeed() : null;
  // The faster of the two measurements: the machine may be shared, and load only ever slows a run.
  const matmul =
    matmulBefore && matmulAfter
      ? matmulBefore.sustained > matmulAfter.sustained
        ? matmulBefore
        : matmulAfter
      : null;

  const forwardFlops = 2 * modelStats(cfg, cfg.num_classes).macs * spec.batch;
  const trainGflops = (3 * forwardFlops) / best(train.ms) / 1e6;
  const inferGflops = forwardFlops / best(inferMs) / 1e6;
  const line = {
    bench: "model",
    config: spec.name,
    engine: engine.engine,
    backend: engine.name,
    threads: engine.threads ?? null,
    batch: spec.batch,
    train_img_s: round((spec.batch * 1000) / best(train.ms), 1),
    train_step_ms: round(best(train.ms), 0),
    train_step_ms_median: round(median(train.ms), 0),
    infer_img_s: round((spec.batch * 1000) / best(inferMs), 1),
    infer_ms: round(best(inferMs), 0),
    train_gflops: round(trainGflops, 1),
    infer_gflops: round(inferGflops, 1),
    matmul_gflops: matmul ? round(matmul.sustained, 1) : null,
    matmul_fastest_gflops:
      matmulBefore && matmulAfter ? round(Math.max(matmulBefore.fastest, matmulAfter.fastest), 1) : null,
    train_efficiency: matmul ? round(trainGflops / matmul.sustained) : null,
    infer_efficiency: matmul ? round(inferGflops / matmul.sustained) : null,
    forward_gflop_per_image: round(forwardFlops / spec.batch / 1e9, 3),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    tensors: tf.memory().numTensors,
    tensors_leaked_per_step: (train.tensorsAfter - train.tensorsWarm) / steps,
    steps,
    warmup,
    load_avg: [round(loadStart), round(os.loadavg()[0])],
    ...(engine.engine === "tfjs" && engine.note ? { note: engine.note } : {}),
    ...(engine.engine === "onnxruntime" && (await deviceReport(engine, config))),
    backend_description: describeEngine(engine),
  };
  console.log(JSON.stringify(line));
}

interface ChildResult {
  code: number | null;
  /** The JSON lines the child printed (each also echoed to stdout when asked). */
  lines: Record<string, unknown>[];
  stderr: string;
}

/** Runs `command args` and collects the JSON lines it prints on stdout. */
function runJsonChild(command: string, argv: string[], echo: boolean): Promise<ChildResult> {
  const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk;
    if (echo) process.stdout.write(chunk);
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk;
  });
  return new Promise((resolve) => {
    child.on("error", (err) => resolve({ code: null, lines: [], stderr: String(err) }));
    child.on("close", (code) => {
      const lines = out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ code, lines, stderr });
    });
  });
}

/** A bench script of this folder in a child process, with this process's Node flags (tsx). */
function runNodeChild(script: string, argv: string[], echo: boolean): Promise<ChildResult> {
  return runJsonChild(process.execPath, [...process.execArgv, script, ...argv], echo);
}

/**
 * Runs one config in a child process (this script with --child) and returns its JSON line, or a line
 * with the child's error (e.g. the wasm heap running out) so the other configs still run.
 */
async function runInChild(name: string, passthrough: string[]): Promise<Record<string, unknown>> {
  const { code, lines, stderr } = await runNodeChild(
    fileURLToPath(import.meta.url),
    ["--child", name, ...passthrough],
    false,
  );
  const result: Record<string, unknown> =
    code === 0 && lines.length > 0
      ? lines[lines.length - 1]
      : {
          bench: "model",
          config: name,
          // emscripten prints its whole minified source before the error: keep the error lines.
          error: stderr
            .split("\n")
            .filter((l) => /^\w*Error|^Aborted/.test(l))
            .slice(0, 2)
            .join("; ")
            .slice(0, 300),
        };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  return result;
}

/** A table cell: the value, or "-" where this engine has none (training on onnxruntime, matMul speed). */
const cell = (v: unknown) => (v === null || v === undefined ? "-" : String(v));

function summary(rows: Record<string, unknown>[]): string {
  const columns: [string, string][] = [
    ["config", "config"],
    ["batch", "batch"],
    ["train_img_s", "train img/s"],
    ["infer_img_s", "infer img/s"],
    ["train_gflops", "train GFLOP/s"],
    ["infer_gflops", "infer GFLOP/s"],
    ["matmul_gflops", "matMul GFLOP/s"],
    ["train_efficiency", "train eff."],
    ["infer_efficiency", "infer eff."],
    ["peak_rss_mb", "peak RSS MB"],
    ["tensors", "tensors"],
  ];
  const cells = [
    columns.map(([, title]) => title),
    // A failed config shows "failed" in its first number column; its error is printed below the table.
    ...rows.map((r) =>
      columns.map(([key], i) => (r.error && i > 0 ? (i === 1 ? "failed" : "") : cell(r[key]))),
    ),
  ];
  const ran = rows.find((r) => !r.error);
  const load = os.loadavg().map((l) => round(l));
  return [
    `backend ${ran?.backend_description ?? args.backend} on ${os.availableParallelism()} cores, load average ${load.join(" ")}`,
    alignTable(cells),
    ...rows.filter((r) => r.error).map((r) => `${r.config} failed: ${r.error}`),
    ...rows
      .filter((r) => r.train_placement)
      .map(
        (r) => `${r.config} on ${r.device}: inference ${r.infer_placement}; training ${r.train_placement}`,
      ),
    "efficiency (tfjs) = the model's matMul GFLOP/s / the backend's on 1024^3 products (sustained, new operands).",
  ].join("\n");
}

/**
 * The PyTorch script once per config (`PYTHON SCRIPT --configs NAME`, so each peak RSS is its own
 * process's), its JSON lines passed through to stdout tagged `bench: "torch"`.
 */
async function runTorch(script: string, names: string[]): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  for (const name of names) {
    const r = await runJsonChild(args.python, [script, "--configs", name], false);
    if (r.code !== 0 || r.lines.length === 0) {
      const reason = r.stderr.trim().split("\n").pop() ?? "";
      lines.push({
        bench: "torch",
        config: name,
        error: `${args.python} ${script} exited with code ${r.code}: ${reason}`,
      });
    }
    for (const l of r.lines) lines.push({ bench: "torch", ...l });
  }
  for (const l of lines) process.stdout.write(`${JSON.stringify(l)}\n`);
  return lines;
}

/** Ours / PyTorch per config: train and inference img/s (higher is better for us), peak RSS (lower is). */
function torchSummary(ours: Record<string, unknown>[], torch: Record<string, unknown>[]): string {
  const find = (config: unknown, mode: string) => torch.find((t) => t.config === config && t.mode === mode);
  const ratio = (a: unknown, b: unknown) =>
    typeof a === "number" && typeof b === "number" && b > 0 ? `${round(a / b)}x` : "-";
  const cells = [
    [
      "config",
      "train img/s",
      "torch",
      "ours/torch",
      "infer img/s",
      "torch",
      "ours/torch",
      "peak RSS MB",
      "torch",
      "ours/torch",
    ],
    ...ours
      .filter((r) => !r.error)
      .map((r) => {
        const train = find(r.config, "train");
        const infer = find(r.config, "infer");
        // The torch process's peak after both modes, as ours is after both.
        const torchRss = [train?.peak_rss_mb, infer?.peak_rss_mb].filter(
          (v) => typeof v === "number",
        ) as number[];
        const rss = torchRss.length > 0 ? Math.max(...torchRss) : undefined;
        return [
          String(r.config),
          cell(r.train_img_s),
          cell(train?.images_per_s),
          ratio(r.train_img_s, train?.images_per_s),
          cell(r.infer_img_s),
          cell(infer?.images_per_s),
          ratio(r.infer_img_s, infer?.images_per_s),
          cell(r.peak_rss_mb),
          cell(rss),
          ratio(r.peak_rss_mb, rss),
        ];
      }),
  ];
  return [
    alignTable(cells),
    ...torch.filter((t) => t.error).map((t) => `torch ${t.config} failed: ${t.error}`),
  ].join("\n");
}

/** bench/data.ts (the data loader at 224 px) in a child process; its JSON lines are passed through. */
async function runDataBench(): Promise<Record<string, unknown>[]> {
  const { code, lines, stderr } = await runNodeChild(
    fileURLToPath(new URL("./data.ts", import.meta.url)),
    [],
    true,
  );
  if (code === 0) return lines;
  const reason = stderr.trim().split("\n").pop() ?? "";
  return [...lines, { bench: "data", error: `bench/data.ts exited with code ${code}: ${reason}` }];
}

/** Loader images/s per case and worker count, and how many vit-ti16-224 training steps' worth that is. */
function loaderSummary(lines: Record<string, unknown>[], models: Record<string, unknown>[]): string {
  if (lines.length === 0) return "";
  const tiny = models.find((r) => r.config === "vit-ti16-224" && typeof r.train_img_s === "number");
  const cells = [
    ["data loader (224 px)", "workers", "img/s", tiny ? "x vit-ti16-224 training" : ""],
    ...lines
      .filter((l) => !l.error)
      .map((l) => [
        String(l.case),
        String(l.workers),
        String(l.images_per_s),
        tiny ? String(round((l.images_per_s as number) / (tiny.train_img_s as number), 0)) : "",
      ]),
  ];
  return [
    alignTable(cells),
    ...lines.filter((l) => l.error).map((l) => `data loader failed: ${l.error}`),
  ].join("\n");
}

if (args.child) {
  const spec = CONFIGS.find((m) => m.name === args.child);
  if (!spec) throw new Error(`--child ${args.child}: unknown config`);
  await runChild(args.batch === undefined ? spec : { ...spec, batch: Number(args.batch) });
} else {
  const only = args.only === undefined ? undefined : new RegExp(args.only);
  const passthrough = ["--backend", args.backend, "--device", args.device, "--steps", args.steps];
  passthrough.push("--warmup", args.warmup);
  if (args.threads !== undefined) passthrough.push("--threads", args.threads);
  if (args.batch !== undefined) passthrough.push("--batch", args.batch);
  const selected = CONFIGS.filter((m) => !only || only.test(m.name));
  const rows: Record<string, unknown>[] = [];
  for (const spec of selected) rows.push(await runInChild(spec.name, passthrough));
  const torchScript = args["compare-torch"];
  const torch = torchScript
    ? await runTorch(
        torchScript,
        selected.map((s) => s.name),
      )
    : [];
  const loader = !only || only.test("data_loader") ? await runDataBench() : [];
  const parts = [summary(rows)];
  if (torchScript) parts.push(torchSummary(rows, torch));
  parts.push(loaderSummary(loader, rows));
  process.stderr.write(`${parts.join("\n")}\n`);
}
