import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import os from "node:os";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import {
  defaultThreads,
  describeBackend,
  initBackend,
  NATIVE_PACKAGES,
  WASM_PACKAGE,
} from "../src/engines/tfjs/select.js";
import { UsageError } from "../src/errors.js";
import { fakeImporter } from "./fake_importer.js";

test("tfjs's Node.js banner is silenced", async () => {
  await initBackend("cpu");
  const warnings: unknown[][] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args);
  try {
    // A fresh cpu backend prints the banner on its first write unless tfjs is in PROD mode.
    const fresh = () =>
      (tf.findBackendFactory("cpu")!() as tf.KernelBackend).write(new Float32Array(1), [1], "float32");
    fresh();
    assert.equal(warnings.length, 0);
    tf.env().set("PROD", false);
    fresh();
    assert.match(String(warnings[0]?.[0]), /looks like you are running TensorFlow\.js in Node\.js/);
  } finally {
    console.warn = warn;
    tf.env().set("PROD", true);
  }
});

test("auto tries tfjs-node-gpu, tfjs-node, then wasm", async () => {
  const importer = fakeImporter({ missing: [...NATIVE_PACKAGES] });
  const choice = await initBackend("auto", { importer, threads: 1 });
  assert.deepEqual(importer.calls, ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node", WASM_PACKAGE]);
  assert.deepEqual(choice, {
    name: "wasm",
    package: WASM_PACKAGE,
    skipped: [
      { name: "tensorflow", reason: "@tensorflow/tfjs-node-gpu not installed" },
      { name: "tensorflow", reason: "@tensorflow/tfjs-node not installed" },
    ],
    threads: 1,
  });
  assert.equal(tf.getBackend(), "wasm");
  assert.equal(describeBackend(choice), "wasm (1 thread)");
});

test("wasm falls back to 1 thread, with a note, when the multi-threaded build cannot start", () => {
  // In a child process: the test breaks shared wasm memory, which the threaded build needs.
  const script = `
    const Memory = WebAssembly.Memory;
    WebAssembly.Memory = function (d) { if (d.shared) throw new Error("no shared memory"); return new Memory(d); };
    const { initBackend } = await import("./src/engines/tfjs/select.ts");
    console.log(JSON.stringify(await initBackend("wasm", { threads: 2 })));
  `;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: new URL("..", import.meta.url),
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const choice = JSON.parse(r.stdout);
  assert.deepEqual([choice.name, choice.threads], ["wasm", 1]);
  assert.match(
    choice.note,
    /^the multi-threaded wasm build failed to start \(.*no shared memory\); running on 1 thread$/,
  );
});

test("wasm threads: null means one per core; the count is reported", async () => {
  assert.equal(defaultThreads(), os.availableParallelism());
  const two = await initBackend("wasm", { threads: 2 });
  assert.equal(two.threads, 2, two.note);
  assert.equal(describeBackend(two), "wasm (2 threads)");
  assert.equal(
    tf.tidy(() => tf.sum(tf.matMul(tf.ones([3, 4]), tf.ones([4, 5]))).arraySync()),
    60,
  );
  assert.equal((await initBackend("wasm", { threads: 1 })).threads, 1);
});

test("auto falls back to cpu when wasm is missing too", async () => {
  const importer = fakeImporter({ missing: [...NATIVE_PACKAGES, WASM_PACKAGE] });
  const choice = await initBackend("auto", { importer });
  assert.equal(choice.name, "cpu");
  assert.deepEqual(
    choice.skipped.map((s) => s.name),
    ["tensorflow", "tensorflow", "wasm"],
  );
  assert.equal(choice.skipped[2].reason, "@tensorflow/tfjs-backend-wasm not installed");
  assert.equal(tf.getBackend(), "cpu");
  assert.equal(tf.tensor([1, 2, 3]).square().sum().arraySync(), 14);
});

test("auto takes tfjs-node when tfjs-node-gpu is missing", async () => {
  const importer = fakeImporter({ missing: ["@tensorflow/tfjs-node-gpu"] });
  try {
    const choice = await initBackend("auto", { importer });
    assert.deepEqual(importer.calls, ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]);
    assert.deepEqual(choice, {
      name: "tensorflow",
      package: "@tensorflow/tfjs-node",
      skipped: [{ name: "tensorflow", reason: "@tensorflow/tfjs-node-gpu not installed" }],
    });
    assert.equal(tf.getBackend(), "tensorflow");
  } finally {
    await tf.setBackend("cpu");
    tf.removeBackend("tensorflow");
  }
});

test("a native package that is installed but cannot load is reported, not fatal", async () => {
  const importer = fakeImporter({
    broken: ["@tensorflow/tfjs-node-gpu"],
    missing: ["@tensorflow/tfjs-node"],
  });
  const choice = await initBackend("auto", { importer });
  assert.equal(choice.name, "wasm");
  assert.equal(
    choice.skipped[0].reason,
    "@tensorflow/tfjs-node-gpu failed to load: libcudart.so.11.0: cannot open shared object file",
  );
});

test("explicit tensorflow when absent is a usage error naming the package to install", async () => {
  const importer = fakeImporter({ missing: [...NATIVE_PACKAGES] });
  await assert.rejects(initBackend("tensorflow", { importer }), (err: unknown) => {
    assert.ok(err instanceof UsageError);
    assert.equal(err.exitCode, 2);
    assert.match(
      err.message,
      /^backend tensorflow is not available \(@tensorflow\/tfjs-node-gpu not installed; /,
    );
    assert.match(
      err.message,
      /run `npm install @tensorflow\/tfjs-node-gpu` \(CUDA; needs libtensorflow 2\.9\.1: CUDA 11\.2, cuDNN 8\.1\)/,
    );
    assert.match(err.message, /`npm install @tensorflow\/tfjs-node` \(CPU\)$/);
    return true;
  });
  assert.deepEqual(importer.calls, [...NATIVE_PACKAGES], "tensorflow never falls back to wasm");
});

test("explicit wasm when absent is a usage error", async () => {
  const importer = fakeImporter({ missing: [WASM_PACKAGE] });
  await assert.rejects(initBackend("wasm", { importer }), {
    name: "UsageError",
    message: "backend wasm is not available: @tensorflow/tfjs-backend-wasm not installed",
  });
  assert.deepEqual(importer.calls, [WASM_PACKAGE]);
});

test("explicit cpu imports nothing", async () => {
  const importer = fakeImporter({});
  assert.deepEqual(await initBackend("cpu", { importer }), { name: "cpu", skipped: [] });
  assert.deepEqual(importer.calls, []);
});

test("auto with the real imports picks a working backend", async () => {
  const choice = await initBackend("auto");
  assert.equal(tf.getBackend(), choice.name);
  assert.ok(choice.name === "tensorflow" || choice.name === "wasm", choice.name);
  if (choice.name === "wasm") {
    // Here (no native package installed) both native packages are reported, in order.
    assert.deepEqual(
      choice.skipped.map((s) => s.reason.split(" ")[0]),
      [...NATIVE_PACKAGES],
    );
  }
  assert.equal(tf.tensor([1, 2, 3]).square().sum().arraySync(), 14);
});
