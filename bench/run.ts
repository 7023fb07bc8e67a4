// Training and inference speed of three ViTs against the backend's own matMul speed:
//
//   npm run bench -- [--backend wasm] [--threads N] [--only REGEX] [--steps 3] [--warmup 2]
//
// and then bench/data.ts (the data loader's images/s at 224 px) unless --only leaves out "data_loader".
//
// Each model runs in its own child process, so its peak RSS is its own (the wasm heap never shrinks)
// and one model's leftovers cannot slow the next. One JSON line per model on stdout, a summary table on
// stderr. A training step is the real one (src/train/step.ts: forward, backward, AdamW, label-smoothed
// cross-entropy, the config's default drop path); images are uploaded from host memory at every step,
// as the loader's batches are.
//
// FLOPs count the matMuls only (modelStats: patch embedding, qkv, q k^T, attn v, proj, MLP, head),
// 2 per multiply-accumulate; a training step is 3x the forward. "efficiency" divides the model's
// achieved GFLOP/s (its fastest step) by the backend's GFLOP/s on 1024^3 products measured in the same
// process: 8 back-to-back products, each with a new right operand as every product in training has (the
// wasm backend packs and caches a right operand by tensor id), timed together like a step; the better
// of a measurement before and one after the model. `matmul_fastest_gflops` is the fastest single one.
import { spawn } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs";
import { findPreset } from "../src/config/presets.js";
import {
  type BackendName,
  backendNames,
  ModelConfigSchema,
  TrainConfigSchema,
} from "../src/config/schema.js";
import { describeBackend, initBackend } from "../src/engines/tfjs/select.js";
import { modelStats } from "../src/model/stats.js";
import { createModel, type VitConfig } from "../src/model/vision_transformer.js";
import { alignTable } from "../src/plot/table.js";
import { Rng } from "../src/random.js";
import { classificationCriterion } from "../src/train/losses.js";
import { createTrainState } from "../src/train/state.js";
import { disposeStepResult, trainStep } from "../src/train/step.js";

interface BenchModel {
  name: string;
  batch: number;
  model: Partial<VitConfig>;
}

// The three models: timm's vit_tiny, a 32 px CIFAR-sized model, a 28 px greyscale one.
const MODELS: BenchModel[] = [
  { name: "vit_tiny_patch16_224", batch: 32, model: { num_classes: 1000 } },
  { name: "vit_tiny_patch4_32", batch: 128, model: { num_classes: 10 } },
  { name: "vit_micro_patch4_28_gray", batch: 256, model: { num_classes: 10 } },
];

const { values: args } = parseArgs({
  options: {
    backend: { type: "string", default: "wasm" },
    threads: { type: "string" },
    only: { type: "string" },
    steps: { type: "string", default: "3" },
    warmup: { type: "string", default: "2" },
    // Overrides every model's batch size (e.g. to fit a slower or hungrier build in memory).
    batch: { type: "string" },
    child: { type: "string" },
  },
});
if (!(backendNames as readonly string[]).includes(args.backend)) {
  throw new Error(`--backend ${args.backend}: expected one of ${backendNames.join(", ")}`);
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;
const best = (times: number[]) => Math.min(...times);
const median = (times: number[]) => [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];

/** Wall time of each of `reps` calls after `warm` untimed ones; `fn` must finish its work (read a result). */
function timeCalls(fn: () => void, warm: number, reps: number): number[] {
  for (let i = 0; i < warm; i++) fn();
  return Array.from({ length: reps }, () => {
    const t0 = performance.now();
    fn();
    return performance.now() - t0;
  });
}

/**
 * GFLOP/s of 1024^3 products with a new right operand each: sustained over `reps` back-to-back products
 * (like a training step, which runs for seconds) and the fastest single product.
 */
function matMulSpeed(reps = 8): { sustained: number; fastest: number } {
  const n = 1024;
  const a = tf.randomNormal([n, n], 0, 1, "float32", 1);
  const b = tf.randomNormal([n, n], 0, 1, "float32", 2);
  const copies = Array.from({ length: reps + 1 }, (_, i) => tf.add(b, i * 1e-3));
  // Reading one element makes an asynchronous backend finish the product inside the timing.
  let i = 0;
  const times = timeCalls(
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

async function runChild(spec: BenchModel): Promise<void> {
  const threads = args.threads === undefined ? null : Number(args.threads);
  const choice = await initBackend(args.backend as BackendName, { threads });
  const loadStart = os.loadavg()[0];
  const preset = findPreset(spec.name)!;
  const cfg = ModelConfigSchema.parse({ ...preset.model, ...spec.model }) as VitConfig;
  const model = createModel(cfg, { seed: 0 });
  const inputShape: [number, number, number] = [cfg.img_size, cfg.img_size, cfg.in_chans];
  // The default recipe's step (AdamW, label smoothing); the learning rate's value does not change its time.
  const train = TrainConfigSchema.parse({});
  const state = createTrainState(model, train, {
    criterion: classificationCriterion(train.label_smoothing),
    stepsPerEpoch: 1,
    inputShape,
    numClasses: cfg.num_classes,
  });
  const batch = randomBatch(spec.batch, inputShape, cfg.num_classes, 0);
  const steps = Number(args.steps);
  const warmup = Number(args.warmup);

  const matmulBefore = matMulSpeed();
  let step = 0;
  const trainOnce = () => {
    const r = trainStep(state, [batch], step++);
    r.loss.dataSync();
    disposeStepResult(r);
  };
  for (let i = 0; i < warmup; i++) trainOnce();
  const tensorsWarm = tf.memory().numTensors;
  const trainMs = timeCalls(trainOnce, 0, steps);
  const tensorsAfter = tf.memory().numTensors;
  const inferMs = timeCalls(
    () =>
      tf.tidy(() => {
        const x = tf.tensor4d(batch.images, [spec.batch, ...inputShape]);
        (model.forward(x, { training: false }) as tf.Tensor).dataSync();
      }),
    1,
    steps,
  );
  const matmulAfter = matMulSpeed();
  // The faster of the two measurements: the machine may be shared, and load only ever slows a run.
  const matmul = matmulBefore.sustained > matmulAfter.sustained ? matmulBefore : matmulAfter;

  const forwardFlops = 2 * modelStats(cfg, cfg.num_classes).macs * spec.batch;
  const trainGflops = (3 * forwardFlops) / best(trainMs) / 1e6;
  const inferGflops = forwardFlops / best(inferMs) / 1e6;
  const line = {
    bench: "model",
    model: spec.name,
    backend: choice.name,
    threads: choice.threads ?? null,
    batch: spec.batch,
    train_img_s: round((spec.batch * 1000) / best(trainMs), 1),
    train_step_ms: round(best(trainMs), 0),
    train_step_ms_median: round(median(trainMs), 0),
    infer_img_s: round((spec.batch * 1000) / best(inferMs), 1),
    infer_ms: round(best(inferMs), 0),
    train_gflops: round(trainGflops, 1),
    infer_gflops: round(inferGflops, 1),
    matmul_gflops: round(matmul.sustained, 1),
    matmul_fastest_gflops: round(Math.max(matmulBefore.fastest, matmulAfter.fastest), 1),
    train_efficiency: round(trainGflops / matmul.sustained),
    infer_efficiency: round(inferGflops / matmul.sustained),
    forward_gflop_per_image: round(forwardFlops / spec.batch / 1e9, 3),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    tensors: tensorsAfter,
    tensors_leaked_per_step: (tensorsAfter - tensorsWarm) / steps,
    steps,
    warmup,
    load_avg: [round(loadStart), round(os.loadavg()[0])],
    ...(choice.note ? { note: choice.note } : {}),
    backend_description: describeBackend(choice),
  };
  console.log(JSON.stringify(line));
}

interface ChildResult {
  code: number | null;
  /** The JSON lines the child printed (each also echoed to stdout when asked). */
  lines: Record<string, unknown>[];
  stderr: string;
}

/** Runs a bench script in a child process (same Node flags) and collects its JSON lines. */
function runJsonChild(script: string, args: string[], echo: boolean): Promise<ChildResult> {
  const child = spawn(process.execPath, [...process.execArgv, script, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
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
    child.on("close", (code) => {
      const lines = out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ code, lines, stderr });
    });
  });
}

/**
 * Runs one model in a child process (this script with --child) and returns its JSON line, or a line
 * with the child's error (e.g. the wasm heap running out) so the other models still run.
 */
async function runInChild(name: string, passthrough: string[]): Promise<Record<string, unknown>> {
  const { code, lines, stderr } = await runJsonChild(
    fileURLToPath(import.meta.url),
    ["--child", name, ...passthrough],
    false,
  );
  const result: Record<string, unknown> =
    code === 0 && lines.length > 0
      ? lines[lines.length - 1]
      : {
          bench: "model",
          model: name,
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

function summary(rows: Record<string, unknown>[]): string {
  const columns: [string, string][] = [
    ["model", "model"],
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
    // A failed model shows "failed" in its first number column; its error is printed below the table.
    ...rows.map((r) =>
      columns.map(([key], i) => (r.error && i > 0 ? (i === 1 ? "failed" : "") : String(r[key]))),
    ),
  ];
  const ran = rows.find((r) => !r.error);
  const load = os.loadavg().map((l) => round(l));
  return [
    `backend ${ran?.backend_description ?? args.backend} on ${os.availableParallelism()} cores, load average ${load.join(" ")}`,
    alignTable(cells),
    ...rows.filter((r) => r.error).map((r) => `${r.model} failed: ${r.error}`),
    "efficiency = the model's matMul GFLOP/s / the backend's on 1024^3 products (sustained, new operands).",
  ].join("\n");
}

/** bench/data.ts (the data loader at 224 px) in a child process; its JSON lines are passed through. */
async function runDataBench(): Promise<Record<string, unknown>[]> {
  const { code, lines, stderr } = await runJsonChild(
    fileURLToPath(new URL("./data.ts", import.meta.url)),
    [],
    true,
  );
  if (code === 0) return lines;
  const reason = stderr.trim().split("\n").pop() ?? "";
  return [...lines, { bench: "data", error: `bench/data.ts exited with code ${code}: ${reason}` }];
}

/** Loader images/s per case and worker count, and how many vit_tiny_patch16_224 training steps' worth that is. */
function loaderSummary(lines: Record<string, unknown>[], models: Record<string, unknown>[]): string {
  if (lines.length === 0) return "";
  const tiny = models.find((r) => r.model === "vit_tiny_patch16_224" && !r.error);
  const cells = [
    ["data loader (224 px)", "workers", "img/s", tiny ? "x vit_tiny training" : ""],
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
  const spec = MODELS.find((m) => m.name === args.child);
  if (!spec) throw new Error(`--child ${args.child}: unknown model`);
  await runChild(args.batch === undefined ? spec : { ...spec, batch: Number(args.batch) });
} else {
  const only = args.only === undefined ? undefined : new RegExp(args.only);
  const passthrough = ["--backend", args.backend, "--steps", args.steps, "--warmup", args.warmup];
  if (args.threads !== undefined) passthrough.push("--threads", args.threads);
  if (args.batch !== undefined) passthrough.push("--batch", args.batch);
  const rows: Record<string, unknown>[] = [];
  for (const spec of MODELS.filter((m) => !only || only.test(m.name))) {
    rows.push(await runInChild(spec.name, passthrough));
  }
  const loader = !only || only.test("data_loader") ? await runDataBench() : [];
  process.stderr.write(`${summary(rows)}\n${loaderSummary(loader, rows)}\n`);
}
