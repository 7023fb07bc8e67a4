/**
 * A fixed-seed short run of the quickstart (fewer images and epochs) through `vit train` on tfjs
 * wasm and on onnxruntime: the same seeds give the same data, masks and initial weights, and the
 * two engines' final val top-1 end within 2 points of each other (their float rounding differs, so
 * the runs drift apart; they must not learn differently).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { ROOT, runVit } from "./support.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-ort-accuracy-"));

async function valTop1(backend: string): Promise<number> {
  const r = await runVit(
    [
      "train",
      "--config",
      path.join(ROOT, "configs", "quickstart.yaml"),
      "--backend",
      backend,
      "--set",
      `name=${backend}`,
      "--set",
      "train.epochs=4",
      "--set",
      "data.synthetic_per_class=150",
      "--set",
      "data.val_split=0.2",
      "--set",
      "model.drop_path_rate=0.1",
      "--set",
      `output.dir=${path.join(dir, "runs")}`,
    ],
    { cwd: dir, env: { XDG_CACHE_HOME: path.join(dir, "cache") } },
  );
  assert.equal(r.code, 0, r.stderr);
  const epochs = fs
    .readFileSync(path.join(r.stdout.trim(), "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .filter((x) => x.kind === "epoch");
  return epochs.at(-1)["val/top1"];
}

test("a short fixed-seed run reaches the same accuracy on tfjs wasm and onnxruntime (within 2 points)", async (t) => {
  const wasm = await valTop1("wasm");
  const onnx = await valTop1("onnxruntime");
  t.diagnostic(`val top-1: wasm ${(wasm * 100).toFixed(1)}%, onnxruntime ${(onnx * 100).toFixed(1)}%`);
  assert.ok(wasm > 0.4 && onnx > 0.4, `the run learns (10 classes): wasm ${wasm}, onnxruntime ${onnx}`);
  assert.ok(Math.abs(wasm - onnx) <= 0.02, `wasm ${wasm} vs onnxruntime ${onnx}`);
});
