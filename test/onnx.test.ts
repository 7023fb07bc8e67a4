/**
 * ONNX export: every timm-parity case is exported from its state dict and run by onnxruntime,
 * which must reproduce timm's logits (and, without a head, its pre-logits features) at the
 * fixture's batch size and at others (the batch dimension is symbolic).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import * as ort from "onnxruntime-node";
import { ModelConfigSchema } from "../src/config/schema.js";
import { exportOnnx } from "../src/engines/onnxruntime/inference.js";
import { DataError } from "../src/errors.js";
import { ProtoWriter } from "../src/io/protobuf.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { createModel, type VitConfig } from "../src/model/index.js";
import type { TensorData } from "../src/tensor.js";
import { assertClose, FIXTURES } from "./support.js";

interface Case {
  name: string;
  cfg: VitConfig;
  stateDict: Map<string, TensorData>;
  /** [B, C, H, W] */
  input: { shape: number[]; data: Float32Array };
  logits: number[][];
  preLogits: number[][];
}

function loadCase(name: string): Case {
  const json = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), "utf8"));
  const kw = json.timm_kwargs;
  const model = ModelConfigSchema.parse({
    img_size: kw.img_size,
    patch_size: kw.patch_size,
    in_chans: kw.in_chans,
    embed_dim: kw.embed_dim,
    depth: kw.depth,
    num_heads: kw.num_heads,
    mlp_ratio: kw.mlp_ratio,
    qkv_bias: kw.qkv_bias,
    class_token: kw.class_token,
    global_pool: kw.global_pool,
    representation_size: json.representation_size,
    distilled: json.distilled,
  });
  const bytes = fs.readFileSync(path.join(FIXTURES, json.files.input));
  return {
    name,
    cfg: { ...model, num_classes: kw.num_classes },
    stateDict: readSafetensors(path.join(FIXTURES, json.files.state_dict)).tensors,
    // copied into its own buffer: a Buffer may sit at an unaligned offset in Node's pool
    input: { shape: json.input.shape, data: new Float32Array(new Uint8Array(bytes).buffer) },
    logits: json.expected.logits,
    preLogits: json.expected.pre_logits,
  };
}

const CASES: string[] = JSON.parse(fs.readFileSync(path.join(FIXTURES, "manifest.json"), "utf8")).cases.map(
  (c: { name: string }) => c.name,
);

/** The fixture samples in the order `rows`, as a new batch. */
function batchOf(input: Case["input"], rows: number[]): ort.Tensor {
  const [, ...sample] = input.shape;
  const size = sample.reduce((a, b) => a * b, 1);
  const data = new Float32Array(rows.length * size);
  rows.forEach((r, i) => {
    data.set(input.data.subarray(r * size, (r + 1) * size), i * size);
  });
  return new ort.Tensor("float32", data, [rows.length, ...sample]);
}

async function run(
  model: Uint8Array,
  x: ort.Tensor,
): Promise<{ dims: readonly number[]; data: Float32Array }> {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  try {
    const out = (await session.run({ pixel_values: x })).logits;
    return { dims: out.dims, data: out.data as Float32Array };
  } finally {
    await session.release();
  }
}

/**
 * The fixture README's bound for float32 CPU backends. Loose enough for summation-order noise
 * (float32 vs float64 differs by ~1e-6 here), tight enough to catch tanh-GELU (>= 1.1e-4).
 */
/** Asserts the output's shape, then every logit within the fixtures' tolerance; returns the worst error. */
function assertLogits(
  got: { dims: readonly number[]; data: Float32Array },
  expected: number[][],
  what: string,
): number {
  assert.deepEqual(got.dims, [expected.length, expected[0].length], `${what}: output shape`);
  return assertClose(got.data, expected.flat(), 1e-5, what);
}

function withoutHeads(stateDict: Map<string, TensorData>): Map<string, TensorData> {
  return new Map([...stateDict].filter(([k]) => !/^head(_dist)?\./.test(k)));
}

describe("ONNX export matches timm through onnxruntime", () => {
  test("the manifest lists cases (the loop below is not vacuous)", () => {
    assert.ok(CASES.length > 0);
  });

  for (const name of CASES) {
    test(name, async (t) => {
      const c = loadCase(name);
      const batch = c.input.shape[0];
      const model = exportOnnx(c.stateDict, c.cfg);

      const session = await ort.InferenceSession.create(model);
      const [input] = session.inputMetadata;
      const [output] = session.outputMetadata;
      await session.release();
      assert.equal(input.name, "pixel_values");
      assert.ok(input.isTensor && output.isTensor);
      assert.deepEqual(input.shape, ["batch", c.cfg.in_chans, c.cfg.img_size, c.cfg.img_size]);
      assert.equal(output.name, "logits");
      assert.deepEqual(output.shape, ["batch", c.cfg.num_classes]);

      const rows = [...Array(batch).keys()];
      const diff = assertLogits(await run(model, batchOf(c.input, rows)), c.logits, `batch ${batch} logits`);
      t.diagnostic(`max |onnxruntime - timm| logits at batch ${batch}: ${diff.toExponential(2)}`);

      // Other batch sizes through the same file: the batch dimension is symbolic.
      const shuffled = [...rows.slice(1), ...rows, rows[0]];
      assertLogits(
        await run(model, batchOf(c.input, shuffled)),
        shuffled.map((r) => c.logits[r]),
        `batch ${shuffled.length} logits`,
      );
      assertLogits(await run(model, batchOf(c.input, [batch - 1])), [c.logits[batch - 1]], "batch 1 logits");

      // num_classes 0: timm's head is Identity and the model returns the pooled features.
      const features = exportOnnx(withoutHeads(c.stateDict), { ...c.cfg, num_classes: 0 });
      const featDiff = assertLogits(await run(features, batchOf(c.input, rows)), c.preLogits, "pre_logits");
      t.diagnostic(`max |onnxruntime - timm| pre_logits: ${featDiff.toExponential(2)}`);
    });
  }
});

describe("ONNX export of variants without a timm fixture agrees with the tfjs model", () => {
  const base = { img_size: 16, patch_size: 4, embed_dim: 24, depth: 2, num_heads: 2, mlp_ratio: 2 };
  const variants: Record<string, Partial<VitConfig>> = {
    "representation_size (pre-logits Linear + tanh)": { representation_size: 12 },
    "distilled, no qkv bias, mlp_ratio 3": { distilled: true, qkv_bias: false, mlp_ratio: 3 },
    "no class token, no qkv bias, avg pool, 1 channel": {
      class_token: false,
      global_pool: "avg",
      qkv_bias: false,
      in_chans: 1,
    },
  };

  for (const [what, variant] of Object.entries(variants)) {
    test(what, async () => {
      await tf.setBackend("cpu");
      const cfg = { ...ModelConfigSchema.parse({ ...base, ...variant }), num_classes: 4 };
      const model = createModel(cfg, { seed: 0 });
      // O(1) weights: at timm's init scale (0.02) tanh(x) ~ x and a missing tanh would pass.
      const rand = uniform(1);
      const stateDict = new Map(
        [...model.stateDict()].map(([k, t]) => [k, { ...t, data: t.data.map(rand) }]),
      );
      model.loadStateDict(stateDict, { strict: true });
      const shape = [3, cfg.in_chans, cfg.img_size, cfg.img_size];
      const x = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(uniform(2));

      const expected = tf.tidy(() => {
        const nhwc = tf.tensor4d(x, shape as [number, number, number, number]).transpose([0, 2, 3, 1]);
        return model.forward(nhwc as tf.Tensor4D, { training: false }) as tf.Tensor2D;
      });
      const want = expected.arraySync();
      expected.dispose();
      model.dispose();
      assertLogits(await run(exportOnnx(stateDict, cfg), new ort.Tensor("float32", x, shape)), want, what);
    });
  }
});

/** Deterministic values in [-1, 1) (a small LCG), so the check never depends on Math.random. */
function uniform(seed: number): () => number {
  let s = seed;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

describe("ONNX export rejects a state dict that does not fit the config", () => {
  const c = loadCase(CASES[0]);

  function rejects(stateDict: Map<string, TensorData>, cfg: VitConfig, pattern: RegExp): void {
    assert.throws(
      () => exportOnnx(stateDict, cfg, { source: "ckpt.safetensors" }),
      (err: unknown) => {
        assert.ok(err instanceof DataError, `expected a DataError, got ${err}`);
        assert.match(err.message, /^ckpt\.safetensors: not the state dict of /);
        assert.match(err.message, pattern);
        assert.doesNotMatch(err.message, /\n/);
        return true;
      },
    );
  }

  test("a missing tensor is named", () => {
    const sd = new Map(c.stateDict);
    sd.delete("blocks.0.mlp.fc2.bias");
    rejects(sd, c.cfg, /missing "blocks\.0\.mlp\.fc2\.bias"/);
  });

  test("a deeper config names the blocks the file lacks", () => {
    rejects(
      c.stateDict,
      { ...c.cfg, depth: c.cfg.depth + 1 },
      new RegExp(`missing "blocks\\.${c.cfg.depth}\\.`),
    );
  });

  test("another class count names the head's shape", () => {
    const K = c.cfg.num_classes;
    rejects(
      c.stateDict,
      { ...c.cfg, num_classes: K + 1 },
      new RegExp(`"head\\.weight" has shape \\[${K},\\d+\\] but the config needs \\[${K + 1},`),
    );
  });

  test("another architecture's names (Hugging Face, prefixed) are listed as missing and unexpected", () => {
    const hf = new Map([...c.stateDict].map(([k, v]) => [`vit.${k}`, v]));
    rejects(hf, c.cfg, /missing "[^"]+".*unexpected "vit\.[^"]+"/);
  });

  test("a distilled file is not a plain ViT", () => {
    const sd = new Map(c.stateDict);
    sd.set("dist_token", { shape: [1, 1, c.cfg.embed_dim], data: new Float32Array(c.cfg.embed_dim) });
    rejects(sd, { ...c.cfg, distilled: false }, /unexpected "dist_token"/);
  });
});

describe("protobuf writer", () => {
  test("varints, negative int64, strings, floats and nested messages use the wire format", () => {
    const inner = new ProtoWriter().int(1, 150);
    const bytes = new ProtoWriter()
      .int(1, 300)
      .int(2, -1)
      .string(3, "hi")
      .float(4, 1)
      .message(5, inner)
      .int(6, 2 ** 40)
      .finish();
    assert.deepEqual(
      [...bytes],
      [
        ...[0x08, 0xac, 0x02], // field 1 varint 300
        ...[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // field 2 int64 -1
        ...[0x1a, 0x02, 0x68, 0x69], // field 3 "hi"
        ...[0x25, 0x00, 0x00, 0x80, 0x3f], // field 4 fixed32 1.0f
        ...[0x2a, 0x03, 0x08, 0x96, 0x01], // field 5 { field 1: 150 }
        ...[0x30, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20], // field 6 varint 2^40
      ],
    );
  });
});
