/**
 * The engine choice (src/engines/select.ts): auto's order across the two engines, and what it
 * says about each candidate it passes over. Missing and broken packages are simulated with an
 * importer, as test/backend.test.ts does for tfjs's native packages.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { ModelConfigSchema } from "../src/config/schema.js";
import { createClassifier } from "../src/engines/classifier.js";
import { cudaProviderFile, hasCudaProvider, ORT_PACKAGE } from "../src/engines/onnxruntime/runtime.js";
import { describeEngine, resumeSelection, selectEngine } from "../src/engines/select.js";
import { defaultThreads, type Importer, NATIVE_PACKAGES, WASM_PACKAGE } from "../src/engines/tfjs/select.js";
import { DataError, UsageError } from "../src/errors.js";
import { writeSafetensors } from "../src/io/safetensors.js";
import { createModel } from "../src/model/index.js";
import { readCheckpointEngine } from "../src/weights/checkpoint.js";
import { fakeImporter, notFound } from "./fake_importer.js";

const [GPU, NODE] = NATIVE_PACKAGES;

async function withoutTensorflow(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } finally {
    if (tf.findBackend("tensorflow")) {
      await tf.setBackend("cpu");
      tf.removeBackend("tensorflow");
    }
  }
}

test("auto takes onnxruntime after a missing tfjs-node-gpu, before tfjs-node", async () => {
  const importer = fakeImporter({ missing: [GPU] });
  const choice = await selectEngine("auto", { importer, threads: 3 });
  assert.deepEqual(importer.calls, [GPU, ORT_PACKAGE], "tfjs-node is not tried");
  assert.equal(choice.engine, "onnxruntime");
  assert.equal(choice.name, "onnxruntime");
  assert.deepEqual(choice.skipped, [{ name: "tensorflow", reason: `${GPU} not installed` }]);
  assert.equal(choice.engine === "onnxruntime" && typeof choice.ort.InferenceSession.create, "function");
  assert.equal(tf.getBackend(), "cpu", "tfjs keeps host-side weights on its cpu backend");
  assert.equal(describeEngine(choice), "onnxruntime (3 threads)");
});

test("onnxruntime threads default to one per core; device cuda is reported", async () => {
  const choice = await selectEngine("onnxruntime", { device: "cuda" });
  assert.equal(choice.threads, defaultThreads());
  assert.equal(choice.engine === "onnxruntime" && choice.device, "cuda");
  assert.equal(describeEngine({ ...choice, threads: 1 }), "onnxruntime (1 thread, cuda)");
});

test("auto takes tfjs-node-gpu (CUDA) before onnxruntime", async () => {
  await withoutTensorflow(async () => {
    const importer = fakeImporter({});
    const choice = await selectEngine("auto", { importer });
    assert.deepEqual(importer.calls, [GPU]);
    assert.deepEqual(choice, { engine: "tfjs", name: "tensorflow", package: GPU, skipped: [] });
    assert.equal(tf.getBackend(), "tensorflow");
  });
});

test("a missing onnxruntime-node: auto goes on to tfjs-node and says why", async () => {
  await withoutTensorflow(async () => {
    const importer = fakeImporter({ missing: [GPU, ORT_PACKAGE] });
    const choice = await selectEngine("auto", { importer });
    assert.deepEqual(importer.calls, [GPU, ORT_PACKAGE, NODE]);
    assert.deepEqual(choice, {
      engine: "tfjs",
      name: "tensorflow",
      package: NODE,
      skipped: [
        { name: "tensorflow", reason: `${GPU} not installed` },
        { name: "onnxruntime", reason: `${ORT_PACKAGE} not installed` },
      ],
    });
  });
});

test("an onnxruntime-node that fails to load: auto falls back to wasm with the error's first line", async () => {
  const importer = fakeImporter({ missing: [GPU, NODE], broken: [ORT_PACKAGE] });
  const choice = await selectEngine("auto", { importer, threads: 1 });
  assert.deepEqual(importer.calls, [GPU, ORT_PACKAGE, NODE, WASM_PACKAGE]);
  assert.equal(choice.engine, "tfjs");
  assert.equal(choice.name, "wasm");
  assert.deepEqual(choice.skipped, [
    { name: "tensorflow", reason: `${GPU} not installed` },
    {
      name: "onnxruntime",
      reason: `${ORT_PACKAGE} failed to load: libonnxruntime.so.1: cannot open shared object file: No such file`,
    },
    { name: "tensorflow", reason: `${NODE} not installed` },
  ]);
  assert.equal(describeEngine(choice), "wasm (1 thread)");
});

test("a package that loads but has no InferenceSession is passed over", async () => {
  const importer: Importer = async (pkg) => {
    if (pkg === ORT_PACKAGE) return { default: {} };
    throw notFound(pkg);
  };
  const choice = await selectEngine("auto", { importer, threads: 1 });
  assert.equal(choice.name, "cpu");
  assert.deepEqual(choice.skipped[1], {
    name: "onnxruntime",
    reason: `${ORT_PACKAGE} loaded but has no InferenceSession`,
  });
});

test("explicit onnxruntime when absent is a usage error naming the package", async () => {
  const importer = fakeImporter({ missing: [ORT_PACKAGE] });
  await assert.rejects(selectEngine("onnxruntime", { importer }), (err: unknown) => {
    assert.ok(err instanceof UsageError);
    assert.equal(
      err.message,
      `backend onnxruntime is not available (${ORT_PACKAGE} not installed): run \`npm install ${ORT_PACKAGE}\``,
    );
    return true;
  });
  assert.deepEqual(importer.calls, [ORT_PACKAGE], "never falls back to tfjs");
});

test("a tfjs-only caller: auto never loads onnxruntime; naming it is a usage error with the caller's reason", async () => {
  const importer = fakeImporter({ missing: [...NATIVE_PACKAGES] });
  const choice = await selectEngine("auto", { importer, threads: 1, tfjsOnly: "attention needs tfjs" });
  assert.equal(choice.name, "wasm");
  assert.deepEqual(importer.calls, [GPU, NODE, WASM_PACKAGE]);
  await assert.rejects(selectEngine("onnxruntime", { importer, tfjsOnly: "attention needs tfjs" }), {
    name: "UsageError",
    message: "backend onnxruntime: attention needs tfjs",
  });
});

test("explicit tfjs backends go to tfjs's selection", async () => {
  const importer = fakeImporter({});
  assert.deepEqual(await selectEngine("cpu", { importer }), { engine: "tfjs", name: "cpu", skipped: [] });
  assert.deepEqual(importer.calls, []);
});

test("a resumed run stays on its engine unless --backend says otherwise", () => {
  assert.deepEqual(resumeSelection("onnxruntime", "auto"), { name: "onnxruntime" });
  assert.deepEqual(resumeSelection("onnxruntime", "wasm"), { name: "onnxruntime" });
  assert.deepEqual(resumeSelection("tfjs", "wasm"), { name: "wasm" });
  const tfjs = resumeSelection("tfjs", "auto");
  assert.equal(tfjs.name, "auto");
  assert.match(tfjs.tfjsOnly ?? "", /trained on tfjs .*--backend onnxruntime/);
  assert.equal(resumeSelection("tfjs", "onnxruntime").name, "auto");
});

test("a checkpoint names its engine; older ones ran on tfjs; anything else is a data error", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-engine-"));
  try {
    const write = (name: string, metadata: Record<string, string>) => {
      const file = path.join(dir, name);
      writeSafetensors(file, new Map([["w", { shape: [1], data: new Float32Array(1) }]]), metadata);
      return file;
    };
    assert.equal(readCheckpointEngine(write("old.safetensors", {})), "tfjs");
    assert.equal(readCheckpointEngine(write("ort.safetensors", { engine: "onnxruntime" })), "onnxruntime");
    assert.throws(() => readCheckpointEngine(write("bad.safetensors", { engine: "torch" })), DataError);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("device cuda without onnxruntime's CUDA provider: a usage error naming the file it needs", async (t) => {
  if (hasCudaProvider()) {
    t.skip("onnxruntime-node's CUDA provider is installed here");
    return;
  }
  const engine = await selectEngine("onnxruntime", { device: "cuda", threads: 1 });
  const cfg = ModelConfigSchema.parse({ img_size: 8, patch_size: 4, embed_dim: 8, depth: 1, num_heads: 2 });
  await assert.rejects(
    createClassifier(engine, createModel({ ...cfg, num_classes: 2 }, { seed: 0 })),
    (err) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, /^runtime\.device cuda: onnxruntime could not start its CUDA provider \(/);
      assert.ok(err.message.includes(cudaProviderFile()), err.message);
      return true;
    },
  );
});
