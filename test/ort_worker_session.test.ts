/**
 * The onnxruntime session on a worker thread (src/engines/onnxruntime/worker_session.ts): it
 * answers what the same session answers on the calling thread, bit for bit, whatever batch sizes
 * follow each other; the caller may reuse its input once `run` returns; a model that cannot load
 * is onnxruntime's error; a released session refuses runs and lets the process exit.
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { ModelConfigSchema } from "../src/config/schema.js";
import { inferenceModel } from "../src/engines/onnxruntime/inference.js";
import { createSession, type SessionOptions } from "../src/engines/onnxruntime/runtime.js";
import { createWorkerSession, type FloatTensor } from "../src/engines/onnxruntime/worker_session.js";
import { type OnnxruntimeChoice, selectEngine } from "../src/engines/select.js";
import { createModel } from "../src/model/index.js";

const cfg = ModelConfigSchema.parse({ img_size: 8, patch_size: 4, embed_dim: 16, depth: 1, num_heads: 2 });
const S = cfg.img_size;
const options: SessionOptions = { threads: 1, device: "cpu" };
let choice: OnnxruntimeChoice;
let graph: ReturnType<typeof inferenceModel>;

before(async () => {
  const engine = await selectEngine("onnxruntime", { threads: 1 });
  assert.equal(engine.engine, "onnxruntime");
  choice = engine as OnnxruntimeChoice;
  const model = createModel({ ...cfg, num_classes: 5 }, { seed: 3 });
  graph = inferenceModel(model.cfg, { weights: model.stateDict(), heads: "both" });
  model.dispose();
});

function images(batch: number, seed: number): FloatTensor {
  const data = new Float32Array(batch * S * S * 3).map((_, i) => Math.sin(seed + 0.37 * i));
  return { data, dims: [batch, S, S, 3] };
}

test("a worker session answers what the session on this thread answers, for batches of any size in turn", async () => {
  const here = await createSession(choice.ort, graph.bytes, options);
  const worker = await createWorkerSession(graph.bytes, options);
  try {
    for (const [i, batch] of [1, 3, 3, 1, 4].entries()) {
      const x = images(batch, i);
      const expected = await here.run({ [graph.input]: new choice.ort.Tensor("float32", x.data, x.dims) });
      const got = await worker.run({ [graph.input]: x });
      for (const name of graph.outputs) {
        assert.deepEqual(got[name].dims, [batch, 5]);
        assert.deepEqual(got[name].data, expected[name].data as Float32Array, `${name}, batch ${batch}`);
      }
    }
  } finally {
    await here.release();
    await worker.release();
  }
});

test("the input is read when run is called: the caller may overwrite it before the answer", async () => {
  const worker = await createWorkerSession(graph.bytes, options);
  try {
    const x = images(2, 7);
    const first = await worker.run({ [graph.input]: images(2, 7) });
    const pending = worker.run({ [graph.input]: x });
    x.data.fill(0);
    const again = await pending;
    assert.deepEqual(again[graph.outputs[0]].data, first[graph.outputs[0]].data);
  } finally {
    await worker.release();
  }
});

test("a model onnxruntime cannot load: its error, from the worker", async () => {
  await assert.rejects(createWorkerSession(new Uint8Array([1, 2, 3]), options), /protobuf parsing failed/);
});

test("a released session refuses to run", async () => {
  const worker = await createWorkerSession(graph.bytes, options);
  await worker.release();
  await assert.rejects(worker.run({ [graph.input]: images(1, 0) }), /the onnxruntime session was released/);
});
