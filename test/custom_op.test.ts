/**
 * customOp (src/model/layers/custom_op.ts) frees `dy` and its saved tensors as soon as its backward
 * has run: gradients that are those same tensors must survive it.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { customOp } from "../src/model/layers/custom_op.js";

test("a gradient that is dy, a saved tensor, or returned twice survives the op's disposals", async () => {
  await tf.setBackend("cpu");
  const x = tf.tensor([1, 2, 3]);
  const w = tf.tensor([4, 5, 6]);
  // d(x * w)/dx = w (a saved tensor); d(a + b) = dy for both inputs (one tensor twice).
  const mul = customOp(
    (a, b) => ({ value: tf.mul(a, b), save: [b] }),
    (dy, [b]) => [tf.mul(dy, b), b],
  );
  const add = customOp(
    (a, b) => ({ value: tf.add(a, b), save: [] }),
    (dy) => [dy, dy],
  );
  const before = tf.memory().numTensors;
  const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(add(mul(a, b), a)))([x, w]);
  // d/dx sum(x * w + x) = w + 1; d/dw = the saved w (the op's second gradient, not x: a made-up rule
  // that exercises returning a saved tensor).
  assert.deepEqual(Array.from(gx.dataSync()), [5, 6, 7]);
  assert.deepEqual(Array.from(gw.dataSync()), [4, 5, 6]);
  tf.dispose([gx, gw]);
  assert.equal(tf.memory().numTensors, before, "nothing is left behind");
  tf.dispose([x, w]);
});
