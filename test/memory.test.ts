/**
 * The memory estimate (src/model/memory.ts) against the bench's measured peaks, and the check that
 * refuses a model too large for its engine before anything is allocated (issue 15, hole 4). Every
 * limit here is fixed: no test depends on this machine's memory.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { loadConfig, resolveConfig } from "../src/config/index.js";
import { PRESETS } from "../src/config/presets.js";
import { ModelConfigSchema } from "../src/config/schema.js";
import { checkTrainingMemory, memoryLimit, WASM_HEAP_BYTES } from "../src/engines/memory.js";
import { ConfigError } from "../src/errors.js";
import { countParams, estimateMemory } from "../src/model/memory.js";
import { VisionTransformer } from "../src/model/vision_transformer.js";
import { ROOT, runVit } from "./support.js";

const GB = 2 ** 30;
const MB = 2 ** 20;

describe("memory estimate", () => {
  test("countParams equals the declared model's count (presets and every optional part)", () => {
    const variants = [
      ...PRESETS.map((p) => p.model),
      { global_pool: "avg" as const, class_token: false },
      { distilled: true },
      { representation_size: 256 },
      { qkv_bias: false, mlp_ratio: 2.5, in_chans: 1 as const },
    ];
    for (const v of variants) {
      const cfg = ModelConfigSchema.parse(v);
      for (const k of [0, 10, 1000]) {
        assert.equal(
          countParams(cfg, k),
          new VisionTransformer({ ...cfg, num_classes: k }).numParams(),
          JSON.stringify(v),
        );
      }
    }
  });

  test("within 10% of the peak RSS bench/README.md measured for a training step", () => {
    // model, batch, classes (bench/run.ts), peak MB ("after, 1 thread" rows)
    const measured = [
      ["vit_tiny_patch16_224", 32, 1000, 3095],
      ["vit_tiny_patch4_32", 128, 10, 2143],
      ["vit_micro_patch4_28_gray", 256, 10, 695],
    ] as const;
    for (const [name, batchSize, numClasses, peak] of measured) {
      const cfg = ModelConfigSchema.parse(PRESETS.find((p) => p.name === name)!.model);
      const e = estimateMemory(cfg, { numClasses, batchSize, training: true, optimizerSlots: 2 });
      const ratio = e.totalBytes / MB / peak;
      assert.ok(
        Math.abs(ratio - 1) < 0.1,
        `${name} batch ${batchSize}: ${Math.round(e.totalBytes / MB)} MB estimated, ${peak} MB measured`,
      );
      assert.equal(e.totalBytes, e.runtimeBytes + e.paramBytes + e.activationBytes);
    }
  });

  test("grows with batch and depth; inference needs less than training", () => {
    const cfg = ModelConfigSchema.parse({});
    const at = (batchSize: number, training = true, c = cfg) =>
      estimateMemory(c, { numClasses: 10, batchSize, training }).totalBytes;
    assert.ok(at(64) > at(32));
    assert.ok(at(32, false) < at(32));
    assert.ok(at(32, true, { ...cfg, depth: 24 }) > at(32));
  });

  test("the limit is a function of the engine's name", () => {
    assert.deepEqual(memoryLimit("wasm", 64 * GB), {
      bytes: WASM_HEAP_BYTES,
      what: "the wasm heap's 4.0 GB",
    });
    assert.equal(memoryLimit("wasm", 2 * GB).bytes, 2 * GB, "never more than the machine has");
    assert.equal(memoryLimit("auto", 64 * GB).bytes, WASM_HEAP_BYTES);
    for (const engine of ["cpu", "tensorflow", "onnxruntime"]) {
      assert.equal(memoryLimit(engine, 64 * GB).bytes, 64 * GB, engine);
      assert.match(memoryLimit(engine, 64 * GB).what, new RegExp(`64\\.0 GB .*engine ${engine}`));
    }
  });

  test("every shipped config fits the engine it names (native engines given 16 GB)", () => {
    const files = fs.readdirSync(path.join(ROOT, "configs")).filter((f) => f.endsWith(".yaml"));
    assert.ok(files.length >= 5);
    for (const f of files) {
      const file = path.join(ROOT, "configs", f);
      const cfg = loadConfig(file);
      const line = checkTrainingMemory(cfg, file, {
        numClasses: cfg.model.num_classes ?? 1000,
        limit: memoryLimit(cfg.runtime.backend, 16 * GB),
      });
      assert.match(
        line,
        /^a training step of [\d.]+ M parameters at train\.batch_size \d+: about [\d.]+ [MG]B of /,
      );
    }
  });

  test("model.depth 1000000: one ConfigError with the estimate and the limit, at once", () => {
    const cfg = resolveConfig({ name: "huge", model: { depth: 1_000_000 } }, { source: "huge.yaml" });
    const started = process.hrtime.bigint();
    assert.throws(
      () => checkTrainingMemory(cfg, "huge.yaml", { numClasses: 0, limit: memoryLimit("wasm", 64 * GB) }),
      (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(
          err.message,
          "huge.yaml: a training step of 444864.2 M parameters at train.batch_size 64 needs about 487370.2 GB, " +
            "more than the wasm heap's 4.0 GB: lower train.batch_size (raise train.accum_steps to keep the total batch) or the model size",
        );
        return true;
      },
    );
    // Pure arithmetic: no model is declared, so a million blocks cost nothing to refuse.
    assert.ok(Number(process.hrtime.bigint() - started) / 1e9 < 1);
  });
});

describe("vit config check / vit train refuse a model that cannot fit", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-memory-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(
    path.join(dir, "deep.yaml"),
    "name: deep\nmodel: {depth: 1000000}\nruntime: {backend: wasm}\n",
  );

  test("config check: exit 2, one line naming the file, the estimate and the wasm limit", async () => {
    const r = await runVit(["config", "check", "deep.yaml"], { cwd: dir });
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^deep\.yaml: a training step of [\d.]+ M parameters at train\.batch_size 64 needs about [\d.]+ GB, more than the wasm heap's [\d.]+ GB: /,
    );
    assert.equal(r.stderr.trim().split("\n").length, 1);
  });

  test("train: exit 2 before allocating (killed after 60 s otherwise)", async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [
          "--import",
          import.meta.resolve("tsx"),
          path.join(ROOT, "cli", "index.ts"),
          "train",
          "--config",
          "deep.yaml",
          "--backend",
          "cpu",
        ],
        { cwd: dir },
      );
      let stderr = "";
      child.stderr.on("data", (d) => {
        stderr += d;
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /^deep: a training step of [\d.]+ M parameters .* needs about [\d.]+ GB, more than this machine's [\d.]+ GB of memory \(engine cpu\)/m,
    );
    assert.ok(!fs.existsSync(path.join(dir, "runs")), "no run folder was made");
  });
});
