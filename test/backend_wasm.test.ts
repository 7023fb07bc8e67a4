import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { initWasm } from "../src/engines/tfjs/wasm_threads.js";

// Runs the same ops on the cpu backend and on wasm (with the view slices) and compares bit for bit.
async function onBoth<T>(fn: () => T): Promise<[T, T]> {
  await tf.setBackend("cpu");
  const cpu = fn();
  await initWasm({ threads: 1 });
  return [cpu, fn()];
}

const values = (t: tf.Tensor | tf.Tensor[]) =>
  (Array.isArray(t) ? t : [t]).map((x) => ({
    shape: x.shape,
    dtype: x.dtype,
    data: Array.from(x.dataSync()),
  }));

test("slice, split and unstack on wasm match the cpu backend for every layout and dtype", async () => {
  const [cpu, wasm] = await onBoth(() =>
    tf.tidy(() => {
      const f = tf.reshape(tf.range(0, 2 * 3 * 4 * 5 * 2, 1, "float32"), [2, 3, 4, 5, 2]);
      const i = tf.cast(f, "int32");
      const b = tf.greater(tf.mod(f, 3), 0);
      const outs: tf.Tensor[] = [];
      for (const x of [f, i, b]) {
        outs.push(tf.slice(x, [1, 0, 0, 0, 0], [1, 3, 4, 5, 2])); // contiguous
        outs.push(tf.slice(x, [0, 1, 2, 1, 1], [2, 2, 2, 3, 1])); // strided on every axis
        outs.push(tf.slice(tf.reshape(x, [6, 40]), [2, 5], [3, 30])); // 2-D window
        outs.push(tf.slice(tf.reshape(x, [240]), [17], [100])); // 1-D
        outs.push(...tf.split(x, [1, 3, 1], 3));
        outs.push(...tf.unstack(x, 1), ...tf.unstack(x, -1));
      }
      return values(outs);
    }),
  );
  assert.equal(wasm.length, 3 * (4 + 3 + 3 + 2));
  assert.deepEqual(wasm, cpu);
});

test("batched products (one XNNPACK product per item) match the cpu backend; other forms fall back", async () => {
  const [cpu, wasm] = await onBoth(() =>
    tf.tidy(() => {
      const rand = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);
      const [a, b] = [rand([2, 3, 5, 7], 1), rand([2, 3, 7, 4], 2)];
      const [c, d] = [rand([6, 5, 7], 3), rand([6, 4, 7], 4)];
      return [
        tf.matMul(a, b), // rank 4, per item
        tf.matMul(c, tf.transpose(d, [0, 2, 1])), // rank 3, per item
        tf.matMul(c, d, false, true), // transposed: tfjs's own kernel
        tf.matMul(c, rand([1, 7, 2], 5)), // broadcast batch: tfjs's own kernel
        tf.matMul(rand([5, 7], 6), rand([7, 3], 7)), // 2-D: tfjs's own kernel
      ].map((t) => ({ shape: t.shape, data: Array.from(t.dataSync()) }));
    }),
  );
  for (const [i, got] of wasm.entries()) {
    assert.deepEqual(got.shape, cpu[i].shape);
    const err = Math.max(...got.data.map((v, j) => Math.abs(v - cpu[i].data[j])));
    assert.ok(err < 1e-5, `case ${i}: max |wasm - cpu| = ${err}`);
  }
});

test("2-D transposes and sums over leading axes (rows a multiple of 128 or not) match the cpu backend", async () => {
  const shapes = [
    [512, 7],
    [12800, 3],
    [9, 1],
  ];
  const [cpu, wasm] = await onBoth(() =>
    tf.tidy(() =>
      shapes.flatMap(([m, n], i) => {
        const x = tf.randomNormal([m, n], 0, 1, "float32", i + 1); // seed 0 means unseeded
        const x3 = tf.reshape(x, [1, m, n]);
        return values([
          tf.transpose(x),
          tf.transpose(tf.cast(x, "int32")),
          tf.sum(x, 0),
          tf.sum(x3, [0, 1], true),
          tf.sum(x3, 0),
          tf.sum(tf.reshape(x, m % 2 === 0 ? [2, m / 2, n] : [1, m, n]), [0, 1]), // two leading axes
          tf.sum(x, -1), // not a leading-axes sum: tfjs's own kernel
        ]);
      }),
    ),
  );
  for (const [i, got] of wasm.entries()) {
    assert.deepEqual([got.shape, got.dtype], [cpu[i].shape, cpu[i].dtype], `output ${i}`);
    const err = Math.max(...got.data.map((v, j) => Math.abs(v - cpu[i].data[j])));
    // cpu sums in float64: 12800 float32 additions differ by up to ~1e-4.
    assert.ok(err <= 1e-3, `output ${i}: max |wasm - cpu| = ${err}`);
  }
  // Transposes are exact, and a column sum adds the rows in order in float32, as tfjs's own kernel does.
  assert.deepEqual(wasm[0], cpu[0]);
  const x = tf.randomNormal([256, 5], 0, 1, "float32", 9);
  const rows = x.arraySync() as number[][];
  const expected = rows[0].map((_, j) => rows.reduce((acc, row) => Math.fround(acc + row[j]), 0));
  assert.deepEqual(Array.from(tf.sum(x, 0).dataSync()), expected);
  x.dispose();
});

test("clone and same-dtype cast share the data instead of copying it", async () => {
  await initWasm({ threads: 1 });
  const x = tf.tensor([1, 2, 3]);
  const [clone, cast] = [tf.clone(x), tf.cast(x, "float32")];
  assert.deepEqual([clone.dataId, cast.dataId], [x.dataId, x.dataId]);
  x.dispose();
  assert.deepEqual(
    [Array.from(clone.dataSync()), Array.from(cast.dataSync())],
    [
      [1, 2, 3],
      [1, 2, 3],
    ],
  );
  assert.deepEqual(Array.from(tf.cast(clone, "int32").dataSync()), [1, 2, 3]);
  tf.dispose([clone, cast]);
});

test("a slice taken after the heap grows still reads the right values", async () => {
  await initWasm({ threads: 1 });
  const x = tf.randomNormal([64, 1000], 0, 1, "float32", 7);
  const expected = Array.from(x.dataSync().subarray(1000 * 5, 1000 * 6));
  // 400 MB forces the heap to grow (and be replaced) while `x` stays alive.
  const big = tf.zeros([100_000_000]);
  const row = tf.slice(x, [5, 0], [1, 1000]);
  assert.deepEqual(Array.from(row.dataSync()), expected);
  tf.dispose([x, big, row]);
});

test("the threaded build runs on 2 threads, matches 1 thread bit for bit, and exits like node", async () => {
  const script = `
    import { createHash } from "node:crypto";
    import * as tf from "@tensorflow/tfjs";
    import { initWasm } from "./src/engines/tfjs/wasm_threads.ts";
    const threads = await initWasm({ threads: Number(process.env.THREADS) });
    const a = tf.randomNormal([300, 200], 0, 1, "float32", 1);
    const b = tf.randomNormal([200, 260], 0, 1, "float32", 2);
    const y = tf.tidy(() => tf.softmax(tf.add(tf.matMul(a, b), tf.erf(tf.matMul(a, b)))));
    const sha = createHash("sha1").update(y.dataSync()).digest("hex");
    console.log(JSON.stringify({ threads, backend: tf.getBackend(), size: y.size, sum: tf.sum(y).dataSync()[0], sha }));
    if (process.env.CRASH) setTimeout(() => { throw new Error("crash after init"); });
  `;
  const run = (threads: number, crash = false) =>
    spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: new URL("..", import.meta.url),
      env: { ...process.env, THREADS: String(threads), ...(crash ? { CRASH: "1" } : {}) },
      encoding: "utf8",
      timeout: 60_000,
    });
  const one = run(1);
  const two = run(2, true);
  assert.equal(one.status, 0, one.stderr);
  // An uncaught exception must keep node's exit code 1 (emscripten's listeners would make it 7), and
  // the pool's worker threads must not keep the process alive (spawnSync would time out: status null).
  assert.equal(two.status, 1, two.stderr);
  assert.match(two.stderr, /crash after init/);
  const [r1, r2] = [JSON.parse(one.stdout), JSON.parse(two.stdout)];
  assert.deepEqual([r1.threads, r1.backend, r2.threads, r2.backend], [1, "wasm", 2, "wasm"]);
  // softmax over 260 columns: every row sums to 1.
  assert.deepEqual([r2.size, Math.round(r2.sum)], [300 * 260, 300]);
  assert.equal(r2.sha, r1.sha);
});

test("initWasm rejects a thread count below 1", async () => {
  await assert.rejects(initWasm({ threads: 0 }), /threads 0 must be >= 1/);
});
