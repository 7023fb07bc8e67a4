/**
 * The training loop in-process on the cpu backend: a run stopped and resumed (at an epoch end
 * and mid-epoch) ends bit-identical to an uninterrupted one, and a non-finite loss stops the
 * run naming the step while the last good checkpoint stays as it was.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import type { Config } from "../src/config/schema.js";
import { InterruptedError, VitError } from "../src/errors.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { loadRunConfig, type TrainOptions, train } from "../src/train/loop.js";
import { Progress } from "../src/train/progress.js";
import { runPath } from "../src/weights/run_dir.js";
import { tinyTrainConfig } from "./support.js";

await tf.setBackend("cpu");

const root = fs.mkdtempSync(path.join(os.tmpdir(), "vit-train-loop-"));
const cacheDir = path.join(root, "cache");
const quiet = () => new Progress({ write: () => true });

const tinyConfig = (name: string, over: Record<string, unknown> = {}) =>
  tinyTrainConfig(name, path.join(root, "runs"), 4, over);

function run(opts: Partial<TrainOptions> & { config: Config }) {
  return train({ backend: "cpu", progress: quiet(), cacheDir, ...opts });
}

/** Every tensor of a safetensors file, as bytes, by name. */
function tensorBytes(file: string): Map<string, Buffer> {
  const { tensors } = readSafetensors(file);
  return new Map(
    [...tensors].map(([k, t]) => [k, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]),
  );
}

function assertSameTensors(a: string, b: string): void {
  const ta = tensorBytes(a);
  const tb = tensorBytes(b);
  assert.deepEqual([...tb.keys()], [...ta.keys()], `${b}: tensor names`);
  for (const [k, v] of ta) assert.ok(v.equals(tb.get(k)!), `${path.basename(b)}: ${k} differs`);
}

/** metrics.jsonl without the wall-clock fields. */
function metricsOf(dir: string): unknown[] {
  return fs
    .readFileSync(runPath(dir, "metrics"), "utf8")
    .trim()
    .split("\n")
    .map((l) => {
      const { img_per_s, train_time_s, val_time_s, ...rest } = JSON.parse(l);
      return rest;
    });
}

test("4 epochs straight == 2 epochs + resume + interrupt mid-epoch + resume: bit-identical", async () => {
  const straight = await run({ config: tinyConfig("straight") });
  assert.ok(straight.val !== null);

  const stop1 = new AbortController();
  await assert.rejects(
    run({ config: tinyConfig("pieces"), signal: stop1.signal, onEpochEnd: (e) => e === 1 && stop1.abort() }),
    (err: unknown) => err instanceof InterruptedError && /vit train --resume .*pieces/.test(err.message),
  );
  const dir = path.join(root, "runs", "pieces");
  assert.equal(readSafetensors(runPath(dir, "last")).metadata.step, "10");

  // Stop again in the middle of epoch 3 (step 13 = 3 of its 5 steps), then finish.
  const stop2 = new AbortController();
  await assert.rejects(
    run({
      config: loadRunConfig(dir),
      resumeDir: dir,
      signal: stop2.signal,
      onStep: (s) => s === 13 && stop2.abort(),
    }),
    (err: unknown) => err instanceof InterruptedError && /epoch 3 step 3\/5/.test(err.message),
  );
  const resumed = await run({ config: loadRunConfig(dir), resumeDir: dir });

  for (const file of ["last", "lastState", "best", "ema"] as const) {
    assertSameTensors(runPath(straight.runDir, file), runPath(dir, file));
  }
  assert.equal(resumed.bestTop1, straight.bestTop1);
  assert.deepEqual(metricsOf(dir), metricsOf(straight.runDir));
  const epochs = metricsOf(dir).filter((r) => (r as { kind: string }).kind === "epoch");
  assert.equal(epochs.length, 4);
});

test("a non-finite loss stops the run naming the step and keeps the last good checkpoint", async () => {
  const stop = new AbortController();
  const config = tinyConfig("nan", { train: { ...tinyConfig("x").train, epochs: 2 } });
  await assert.rejects(
    run({ config, signal: stop.signal, onEpochEnd: () => stop.abort() }),
    InterruptedError,
  );
  const dir = path.join(root, "runs", "nan");
  const before = fs.readFileSync(runPath(dir, "last"));
  const exploding = loadRunConfig(dir, ["train.optimizer.lr=1e30", "train.clip_grad_norm=null"]);
  await assert.rejects(run({ config: exploding, resumeDir: dir }), (err: unknown) => {
    assert.ok(err instanceof VitError && !(err instanceof InterruptedError), String(err));
    assert.match(
      err.message,
      /^non-finite loss at step (6|7|8|9|10) \(epoch 2\): training stopped; the last good checkpoint \(end of epoch 1\) is .*nan.checkpoints.last\.safetensors/,
    );
    return true;
  });
  assert.ok(fs.readFileSync(runPath(dir, "last")).equals(before), "the last good checkpoint was overwritten");
});
