// `vit serve` under load, against the engine's own speed measured in the same run:
//
//   npm run bench:serve -- [--backend auto] [--threads N] [--seconds 10] [--soak 3000] [--soak-max-s 180]
//
// vit_tiny_patch16_224 with random weights (1000 classes) is served by the real `vit serve` in a child
// process on 127.0.0.1 (its request log discarded); autocannon posts one 224 px JPEG per request at
// concurrency 1, 8 and 32, about --seconds each (a request count from the engine's speed, timed to the
// last answer), then a soak of --soak requests at concurrency 32 (stopped after --soak-max-s), reading
// the server's RSS before and after it.
//
// Before the server starts, this process measures the engine alone on the same checkpoint: batch
// inference images/s at the server's --max-batch (the Classifier predict runs, on already-decoded
// images) and the time of a single forward pass (batch 1, median). The targets are printed as
// ratios: served images/s at concurrency 32 over engine images/s (>= 0.9), p99 at concurrency 1 over a
// single forward (<= 1.5), and RSS after the soak over before it (flat: ~1.0).
//
// One JSON line on stdout, the table on stderr.
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import sharp from "sharp";
import { writeRandomRun } from "../scripts/random_run.js";
import { resolveConfig } from "../src/config/index.js";
import { type BackendName, backendNames } from "../src/config/schema.js";
import { describeEngine, type EngineChoice, selectEngine } from "../src/engines/select.js";
import { alignTable } from "../src/plot/table.js";
import { loadClassifier } from "../src/weights/model_source.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PRESET = "vit_tiny_patch16_224";
const SIZE = 224;

const { values: args } = parseArgs({
  options: {
    backend: { type: "string", default: "auto" },
    threads: { type: "string" },
    seconds: { type: "string", default: "10" },
    soak: { type: "string", default: "3000" },
    "soak-max-s": { type: "string", default: "180" },
    "max-batch": { type: "string", default: "32" },
    "window-ms": { type: "string", default: "5" },
  },
});
if (!backendNames.includes(args.backend as BackendName)) {
  throw new Error(`--backend ${args.backend}: expected one of ${backendNames.join(", ")}`);
}
const backend = args.backend as BackendName;
const threads = args.threads ? Number(args.threads) : undefined;
const seconds = Number(args.seconds);
const soakRequests = Number(args.soak);
const soakMaxS = Number(args["soak-max-s"]);
const maxBatch = Number(args["max-batch"]);

/** A 224 px JPEG with some structure (a gradient and waves), as a camera image compresses. */
async function jpeg(): Promise<Buffer> {
  const px = Buffer.alloc(SIZE * SIZE * 3);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      for (let c = 0; c < 3; c++) {
        px[(y * SIZE + x) * 3 + c] = 128 + 100 * Math.sin(0.05 * x * (c + 1) + 0.03 * y) * Math.cos(0.02 * y);
      }
    }
  }
  return sharp(px, { raw: { width: SIZE, height: SIZE, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The engine alone: batch images/s at `maxBatch` and the median single forward, in ms. */
async function engineSpeed(
  run: string,
  choice: EngineChoice,
): Promise<{ batchImgS: number; singleMs: number }> {
  const { classifier } = await loadClassifier({ run }, choice);
  const forward = (images: Float32Array, n: number) => classifier.predictLogits(images, n);
  try {
    const stride = SIZE * SIZE * 3;
    const batch = new Float32Array(maxBatch * stride).map((_, i) => Math.sin(i));
    await forward(batch, maxBatch); // warm-up: kernels, weight packing
    const reps = 3;
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) await forward(batch, maxBatch);
    const batchImgS = (reps * maxBatch * 1000) / (performance.now() - t0);
    const one = batch.subarray(0, stride);
    await forward(one, 1);
    const times: number[] = [];
    for (let i = 0; i < 9; i++) {
      const t = performance.now();
      await forward(one, 1);
      times.push(performance.now() - t);
    }
    return { batchImgS, singleMs: median(times) };
  } finally {
    await classifier.dispose();
  }
}

/** `vit serve` in a child process; resolves with its URL once it listens. */
function startServer(run: string): Promise<{ child: ChildProcess; url: string }> {
  const flags = ["--run", run, "--port", "0", "--backend", backend, "--max-batch", String(maxBatch)];
  flags.push("--batch-window-ms", String(args["window-ms"]), "--max-queue", String(4 * maxBatch));
  if (threads) flags.push("--threads", String(threads));
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(ROOT, "cli", "index.ts"), "serve", ...flags],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  return new Promise((resolve, reject) => {
    child.stderr!.on("data", (d) => {
      stderr += d;
      const m = /listening on (http:\/\/\S+)\//.exec(stderr);
      if (m) resolve({ child, url: m[1] });
    });
    child.on("exit", (code) => reject(new Error(`vit serve exited ${code}: ${stderr}`)));
  });
}

/** Resident memory of a process, in MB (Linux /proc). */
function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function idle(url: string): Promise<void> {
  for (;;) {
    const health = (await (await fetch(`${url}/healthz`)).json()) as { in_flight: number };
    if (health.in_flight === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Load {
  connections: number;
  requests: number;
  reqS: number;
  p50: number;
  p99: number;
  failed: number;
}

/** autocannon on POST /predict: `amount` requests, stopped after `maxS` seconds if not done. */
async function load(
  url: string,
  body: Buffer,
  o: { connections: number; amount: number; maxS: number },
): Promise<Load> {
  let stop: NodeJS.Timeout | undefined;
  const r = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${url}/predict`,
        method: "POST",
        headers: { "content-type": "image/jpeg" },
        body,
        connections: o.connections,
        // A slow machine answers late rather than not at all: count the latency, not a timeout.
        timeout: 120,
        amount: o.amount,
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
    stop = setTimeout(() => instance.stop(), o.maxS * 1000);
  });
  clearTimeout(stop);
  // Requests still in the server when the load generator stops must not slow the next phase.
  await idle(url);
  return {
    connections: o.connections,
    requests: r.requests.total,
    reqS: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    failed: r.non2xx + r.errors + r.timeouts,
  };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-bench-serve-"));
let server: ChildProcess | undefined;
try {
  const choice = await selectEngine(backend, { threads });
  const engineName = describeEngine(choice);
  const config = resolveConfig({ name: "bench", model: { preset: PRESET } }, { source: "bench" });
  const classes = Array.from({ length: 1000 }, (_, i) => `class_${i}`);
  const run = writeRandomRun(path.join(dir, "run"), config, classes);
  const body = await jpeg();
  process.stderr.write(`engine alone (${PRESET}, batch ${maxBatch} and 1)...\n`);
  const engine = await engineSpeed(run, choice);
  const started = await startServer(run);
  server = started.child;
  const { url } = started;
  process.stderr.write(`serving at ${url}; warming up with full batches...\n`);
  await load(url, body, { connections: 32, amount: 2 * maxBatch, maxS: 4 * seconds + 60 });
  // Each phase is a number of requests (about --seconds at the engine's speed, at least 4 rounds),
  // timed to its last answer: a fixed duration would cut off the batch in flight when it ends.
  const expected = (c: number) => Math.min(engine.batchImgS, (c * 1000) / engine.singleMs);
  const loads: Load[] = [];
  for (const connections of [1, 8, 32]) {
    const amount = Math.max(4 * connections, Math.ceil(seconds * expected(connections)));
    process.stderr.write(`concurrency ${connections}: ${amount} requests...\n`);
    loads.push(await load(url, body, { connections, amount, maxS: 4 * seconds + 60 }));
  }
  const rssBefore = rssMb(server.pid!);
  process.stderr.write(`soak: ${soakRequests} requests at concurrency 32 (at most ${soakMaxS} s)...\n`);
  const soak = await load(url, body, { connections: 32, amount: soakRequests, maxS: soakMaxS });
  const rssAfter = rssMb(server.pid!);

  const c1 = loads[0];
  const c32 = loads[2];
  const ratios = {
    served_over_engine_c32: c32.reqS / engine.batchImgS,
    p99_c1_over_single_forward: c1.p99 / engine.singleMs,
    rss_after_over_before_soak: rssAfter / rssBefore,
  };
  const summary = {
    bench: "serve",
    model: PRESET,
    engine: engineName,
    max_batch: maxBatch,
    engine_batch_img_s: engine.batchImgS,
    engine_single_forward_ms: engine.singleMs,
    loads,
    soak: { ...soak, rss_before_mb: rssBefore, rss_after_mb: rssAfter },
    ratios,
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  const f1 = (x: number) => x.toFixed(1);
  process.stderr.write(
    [
      `vit serve, ${PRESET} (random weights), ${engineName}, 224 px JPEG, one image per request, loopback`,
      alignTable([
        ["concurrency", "requests", "req/s", "img/s", "p50 ms", "p99 ms", "failed"],
        ...[...loads, soak].map((l, i) => [
          i === loads.length ? `${l.connections} (soak)` : String(l.connections),
          String(l.requests),
          f1(l.reqS),
          f1(l.reqS),
          f1(l.p50),
          f1(l.p99),
          String(l.failed),
        ]),
      ]),
      `engine alone: ${f1(engine.batchImgS)} img/s at batch ${maxBatch}; single forward ${f1(engine.singleMs)} ms`,
      `RSS of the server: ${f1(rssBefore)} MB before the soak, ${f1(rssAfter)} MB after`,
      alignTable([
        ["target", "measured", "goal"],
        ["served img/s at c=32 / engine img/s", ratios.served_over_engine_c32.toFixed(2), ">= 0.90"],
        ["p99 at c=1 / single forward", ratios.p99_c1_over_single_forward.toFixed(2), "<= 1.50"],
        ["RSS after / before soak", ratios.rss_after_over_before_soak.toFixed(2), "~1.00 (flat)"],
      ]),
      "",
    ].join("\n"),
  );
} finally {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server!.once("exit", r));
    server.kill("SIGTERM");
    await exited;
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
