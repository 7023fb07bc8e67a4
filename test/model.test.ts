/**
 * The model's own checks (parity with timm is test/parity.test.ts): gradients by finite
 * differences, gradient coverage and leaks on cpu and wasm, init statistics, seeding, drop path and
 * dropout, distilled heads, state-dict round trips and errors, and parameter counts.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { listModels } from "../cli/commands/models.js";
import { findPreset, PRESETS } from "../src/config/presets.js";
import { type ModelConfig, ModelConfigSchema } from "../src/config/schema.js";
import { ConfigError, DataError } from "../src/errors.js";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import {
  createModel,
  dropPathRates,
  modelStats,
  VisionTransformer,
  type VitConfig,
} from "../src/model/index.js";
import type { Block } from "../src/model/layers/block.js";
import { DropPath } from "../src/model/layers/drop_path.js";
import { Dropout } from "../src/model/layers/dropout.js";
import { ForwardContext, Identity } from "../src/model/module.js";
import { Rng } from "../src/random.js";
import type { StateDict } from "../src/tensor.js";
import { FIXTURES } from "./support.js";

function config(overrides: Partial<ModelConfig> & { num_classes: number }): VitConfig {
  const base = {
    img_size: 8,
    patch_size: 4,
    embed_dim: 8,
    depth: 2,
    num_heads: 2,
    mlp_ratio: 2,
    drop_path_rate: 0,
  };
  const cfg = ModelConfigSchema.parse({ ...base, ...overrides });
  return { ...cfg, num_classes: overrides.num_classes };
}

/** A random NHWC batch. */
function images(cfg: VitConfig, batch: number, seed: number): tf.Tensor4D {
  const rng = Rng.from(seed, "images");
  const shape: [number, number, number, number] = [batch, cfg.img_size, cfg.img_size, cfg.in_chans];
  return tf.tensor4d(
    Float32Array.from({ length: batch * cfg.img_size ** 2 * cfg.in_chans }, () => rng.normal()),
    shape,
  );
}

/**
 * O(1) weights as the parity fixtures draw them (LayerNorm 1 + 0.2N / 0.1N, weights N/sqrt(fan_in),
 * biases 0.1N, tokens 0.5N): timm's 0.02-scale init would hide wrong gradients in the noise.
 */
function o1Weights(model: VisionTransformer, seed: number): StateDict {
  const sd: StateDict = new Map();
  for (const [name, spec] of model.namedParamSpecs()) {
    const rng = Rng.from(seed, name);
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const isWeight = name.endsWith("weight");
    const draw =
      spec.kind === "norm"
        ? () => (isWeight ? 1 + 0.2 * rng.normal() : 0.1 * rng.normal())
        : spec.kind === "linear" || spec.kind === "patch"
          ? () => (isWeight ? rng.normal() / Math.sqrt(spec.fanIn!) : 0.1 * rng.normal())
          : () => 0.5 * rng.normal();
    sd.set(name, { shape: spec.shape, data: Float32Array.from({ length: n }, draw) });
  }
  return sd;
}

function logitsOf(out: tf.Tensor | { logits: tf.Tensor; distLogits: tf.Tensor }): tf.Tensor {
  return out instanceof tf.Tensor ? out : out.logits;
}

/** A scalar that depends on every output (both heads when a distilled model trains). */
function projectionLoss(model: VisionTransformer, x: tf.Tensor4D, training: boolean): tf.Scalar {
  const out = model.forward(x, { training, seed: 7 });
  const parts = out instanceof tf.Tensor ? [out] : [out.logits, out.distLogits];
  return tf.addN(
    parts.map((p, i) => {
      const rng = Rng.from(i, "projection");
      const r = tf.tensor(
        Float32Array.from({ length: p.size }, () => rng.normal()),
        p.shape,
      );
      return tf.sum(tf.mul(p, r));
    }),
  ) as tf.Scalar;
}

function stats(data: Float32Array): { mean: number; std: number; maxAbs: number } {
  let sum = 0;
  let maxAbs = 0;
  for (const v of data) {
    sum += v;
    maxAbs = Math.max(maxAbs, Math.abs(v));
  }
  const mean = sum / data.length;
  let sq = 0;
  for (const v of data) sq += (v - mean) ** 2;
  return { mean, std: Math.sqrt(sq / data.length), maxAbs };
}

function assertNear(got: number, want: number, relTol: number, what: string): void {
  assert.ok(
    Math.abs(got - want) <= relTol * Math.abs(want),
    `${what}: got ${got}, want ${want} +-${relTol * 100}%`,
  );
}

before(async () => {
  await tf.setBackend("cpu");
});

describe("finite-difference gradients", () => {
  const cases: [string, VitConfig, boolean][] = [
    ["class token, representation_size", config({ num_classes: 3, representation_size: 6 }), false],
    [
      "avg pool + fc_norm, 1 channel",
      config({ num_classes: 3, in_chans: 1, class_token: false, global_pool: "avg" }),
      false,
    ],
    ["distilled, training (both heads)", config({ num_classes: 3, distilled: true }), true],
    [
      "training with dropout, attention dropout and drop path (masks fixed by the seed)",
      config({ num_classes: 3, drop_rate: 0.2, attn_drop_rate: 0.3, drop_path_rate: 0.5 }),
      true,
    ],
  ];
  for (const [name, cfg, training] of cases) {
    test(name, (t) => {
      const model = createModel(cfg, { seed: 0 });
      model.loadStateDict(o1Weights(model, 1));
      const x = images(cfg, 2, 2);
      const params = model.namedParameters();
      const { grads } = tf.variableGrads(
        () => projectionLoss(model, x, training),
        params.map(([, v]) => v),
      );
      const eps = 1e-2;
      let worst = 0;
      for (const [pname, v] of params) {
        const g = grads[v.name].dataSync();
        const original = v.dataSync().slice();
        const rng = Rng.from(3, pname);
        // A few coordinates per tensor, and always the largest-gradient one.
        let top = 0;
        for (let i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[top])) top = i;
        const coords = [top, ...Array.from({ length: 3 }, () => Math.floor(rng.uniform() * g.length))];
        for (const i of coords) {
          const at = (delta: number) => {
            const w = original.slice();
            w[i] += delta;
            v.assign(tf.tensor(w, v.shape));
            return tf.tidy(() => projectionLoss(model, x, training).dataSync()[0]);
          };
          const numeric = (at(eps) - at(-eps)) / (2 * eps);
          v.assign(tf.tensor(original, v.shape));
          const err = Math.abs(numeric - g[i]);
          worst = Math.max(worst, err / (1e-2 + Math.abs(g[i])));
          assert.ok(
            err <= 1e-4 + 5e-3 * Math.abs(g[i]),
            `${pname}[${i}]: backprop ${g[i]}, finite difference ${numeric}`,
          );
        }
      }
      t.diagnostic(
        `${params.length} tensors, worst |fd - grad| / (1e-2 + |grad|) = ${worst.toExponential(2)}`,
      );
      tf.dispose([x, ...Object.values(grads)]);
      model.dispose();
    });
  }
});

for (const backend of ["cpu", "wasm"]) {
  describe(`training step on ${backend}`, () => {
    before(async () => {
      assert.ok(await tf.setBackend(backend));
    });
    after(async () => {
      await tf.setBackend("cpu");
    });

    for (const [name, extra] of [
      ["token pool, representation_size", { representation_size: 6 }],
      ["distilled", { distilled: true }],
      ["avg pool", { class_token: false, global_pool: "avg" as const }],
    ] as const) {
      test(`${name}: every parameter gets a finite non-zero gradient; no tensor leaks`, () => {
        const cfg = config({
          num_classes: 3,
          drop_rate: 0.1,
          attn_drop_rate: 0.1,
          drop_path_rate: 0.2,
          ...extra,
        });
        const model = createModel(cfg, { seed: 0 });
        model.loadStateDict(o1Weights(model, 1));
        const x = images(cfg, 4, 2);
        const params = model.namedParameters();
        const step = () => {
          const { value, grads } = tf.variableGrads(
            () => projectionLoss(model, x, true),
            params.map(([, v]) => v),
          );
          assert.equal(Object.keys(grads).length, params.length);
          for (const [pname, v] of params) {
            const g = grads[v.name];
            assert.ok(g, `${pname}: no gradient`);
            const s = stats(g.dataSync() as Float32Array);
            assert.ok(Number.isFinite(s.maxAbs), `${pname}: non-finite gradient`);
            assert.ok(s.maxAbs > 0, `${pname}: gradient is all zero`);
          }
          assert.ok(Number.isFinite(value.dataSync()[0]));
          tf.dispose([value, ...Object.values(grads)]);
        };
        step(); // the first call may allocate backend state
        const before = tf.memory().numTensors;
        step();
        step();
        assert.equal(tf.memory().numTensors, before, "tensors leaked by forward + backward");
        x.dispose();
        model.dispose();
      });
    }

    test("init does not depend on the backend", () => {
      const cfg = config({ num_classes: 3, distilled: true });
      const here = createModel(cfg, { seed: 5 });
      const sd = here.stateDict();
      here.dispose();
      return tf.setBackend(backend === "cpu" ? "wasm" : "cpu").then(() => {
        const there = createModel(cfg, { seed: 5 });
        assert.deepEqual(there.stateDict(), sd);
        there.dispose();
      });
    });
  });
}

describe("init", () => {
  test("timm mode: per-tensor statistics", () => {
    const cfg = config({
      num_classes: 10,
      img_size: 32,
      embed_dim: 192,
      num_heads: 3,
      mlp_ratio: 4,
      distilled: true,
    });
    const model = createModel(cfg, { seed: 0 });
    const sd = model.stateDict();
    const patchBound = 1 / Math.sqrt(3 * 4 * 4);
    let linear = 0;
    for (const [name, t] of sd) {
      const s = stats(t.data);
      if (name === "cls_token") assertNear(s.std, 1e-6, 0.2, name);
      else if (name === "dist_token") assertNear(s.std, 0.02, 0.2, name);
      else if (name === "pos_embed") assertNear(s.std, 0.02, 0.05, name);
      else if (name.startsWith("patch_embed")) {
        assert.ok(s.maxAbs <= patchBound, `${name}: max ${s.maxAbs} > ${patchBound}`);
        assertNear(s.std, patchBound / Math.sqrt(3), name.endsWith("weight") ? 0.03 : 0.2, name);
      } else if (/norm\d?\.weight$/.test(name))
        assert.ok(
          t.data.every((v) => v === 1),
          `${name}: not all ones`,
        );
      else if (name.endsWith("bias"))
        assert.ok(
          t.data.every((v) => v === 0),
          `${name}: not all zeros`,
        );
      else {
        linear++;
        assertNear(s.std, 0.02, t.data.length > 10000 ? 0.02 : 0.06, name);
      }
      if (s.std > 0)
        assert.ok(Math.abs(s.mean) < (4 * s.std) / Math.sqrt(t.data.length), `${name}: mean ${s.mean}`);
    }
    assert.equal(linear, 2 * 4 + 2, "qkv, proj, fc1, fc2 per block, head, head_dist");
    model.dispose();
  });

  test("jax mode: xavier Linear, zero heads, lecun patch and pre-logits, tiny MLP biases", () => {
    const cfg = config({
      num_classes: 10,
      img_size: 32,
      embed_dim: 192,
      num_heads: 3,
      mlp_ratio: 4,
      representation_size: 96,
      weight_init: "jax",
    });
    const model = createModel(cfg, { seed: 0 });
    const sd = model.stateDict();
    const lecun = (fanIn: number) => Math.sqrt(1 / fanIn);
    const check = (name: string, std: number, tol: number, maxAbs?: number) => {
      const s = stats(sd.get(name)!.data);
      assertNear(s.std, std, tol, name);
      if (maxAbs !== undefined) assert.ok(s.maxAbs <= maxAbs, `${name}: max ${s.maxAbs} > ${maxAbs}`);
    };
    check("blocks.0.attn.qkv.weight", Math.sqrt(2 / (192 + 576)), 0.02, Math.sqrt(6 / (192 + 576)));
    check("blocks.1.mlp.fc2.weight", Math.sqrt(2 / (768 + 192)), 0.02, Math.sqrt(6 / (768 + 192)));
    check("patch_embed.proj.weight", lecun(48), 0.03, (2 * lecun(48)) / 0.87962566103423978);
    check("pre_logits.fc.weight", lecun(192), 0.03, (2 * lecun(192)) / 0.87962566103423978);
    check("blocks.0.mlp.fc1.bias", 1e-6, 0.1);
    check("pos_embed", 0.02, 0.05);
    for (const name of ["head.weight", "head.bias", "blocks.0.attn.qkv.bias", "patch_embed.proj.bias"]) {
      assert.ok(
        sd.get(name)!.data.every((v) => v === 0),
        `${name}: not all zeros`,
      );
    }
    model.dispose();
  });

  test("the same seed gives the same weights, another seed other weights", () => {
    const cfg = config({ num_classes: 3, distilled: true });
    const [a, b, c] = [0, 0, 1].map((seed) => createModel(cfg, { seed }));
    assert.deepEqual(a.stateDict(), b.stateDict());
    const [sa, sc] = [a.stateDict(), c.stateDict()];
    for (const [name, t] of sa) {
      if (t.data.some((v) => v !== 0 && v !== 1)) assert.notDeepEqual(t.data, sc.get(name)!.data, name);
    }
    for (const m of [a, b, c]) m.dispose();
  });
});

describe("stochastic layers", () => {
  test("drop-path rates rise linearly from 0 over the blocks (timm's linspace)", () => {
    const close = (got: number[], want: number[]) =>
      assert.ok(got.length === want.length && got.every((v, i) => Math.abs(v - want[i]) < 1e-12), `${got}`);
    close(dropPathRates(0.3, 4), [0, 0.1, 0.2, 0.3]);
    close(dropPathRates(0.1, 1), [0]);
    close(
      dropPathRates(0.1, 12),
      Array.from({ length: 12 }, (_, i) => (0.1 * i) / 11),
    );
    const model = new VisionTransformer(config({ num_classes: 3, depth: 4, drop_path_rate: 0.3 }));
    const blocks = Array.from({ length: 4 }, (_, i) => model.blocks.at(i) as Block);
    assert.ok(
      blocks[0].drop_path1 instanceof Identity && blocks[0].drop_path2 instanceof Identity,
      "rate 0: identity",
    );
    for (const [i, block] of blocks.entries()) {
      for (const layer of [block.drop_path1, block.drop_path2]) {
        const rate = layer instanceof DropPath ? layer.rate : 0;
        assert.ok(Math.abs(rate - 0.1 * i) < 1e-12, `block ${i}: rate ${rate}`);
      }
    }
  });

  test("DropPath drops whole samples at its rate and scales the rest; eval is the identity", () => {
    const layer = new DropPath(0.25);
    const x = tf.ones([4000, 3, 2]);
    const y = layer.call(x, new ForwardContext(true, 11));
    const values = y.arraySync() as number[][][];
    let dropped = 0;
    for (const sample of values) {
      const flatSample = sample.flat();
      const first = flatSample[0];
      assert.ok(
        flatSample.every((v) => v === first),
        "a sample is dropped or kept as a whole",
      );
      assert.ok(first === 0 || Math.abs(first - 1 / 0.75) < 1e-6, `kept values are 1/keep, got ${first}`);
      if (first === 0) dropped++;
    }
    assert.ok(Math.abs(dropped / 4000 - 0.25) < 0.03, `dropped ${dropped} of 4000`);
    assert.equal(layer.call(x, new ForwardContext(false, 11)), x);
    const again = layer.call(x, new ForwardContext(true, 11));
    assert.deepEqual(again.dataSync(), y.dataSync(), "same seed, same mask");
    tf.dispose([x, y, again]);
  });

  test("Dropout drops elements at its rate and scales the rest", () => {
    const x = tf.ones([100, 100]);
    const y = new Dropout(0.3).call(x, new ForwardContext(true, 4));
    const data = y.dataSync();
    const zeros = data.filter((v) => v === 0).length;
    assert.ok(Math.abs(zeros / data.length - 0.3) < 0.02, `${zeros} zeros of ${data.length}`);
    assert.ok(data.every((v) => v === 0 || Math.abs(v - 1 / 0.7) < 1e-6));
    tf.dispose([x, y]);
  });

  test("model: eval is deterministic; training draws masks from the seed", () => {
    const cfg = config({
      num_classes: 3,
      drop_rate: 0.2,
      attn_drop_rate: 0.2,
      drop_path_rate: 0.2,
      depth: 3,
    });
    const model = createModel(cfg, { seed: 0 });
    model.loadStateDict(o1Weights(model, 1));
    const x = images(cfg, 4, 2);
    const run = (opts: { training: boolean; seed?: number }) =>
      tf.tidy(() => Array.from(logitsOf(model.forward(x, opts)).dataSync()));
    const evalA = run({ training: false, seed: 1 });
    assert.deepEqual(run({ training: false, seed: 2 }), evalA, "eval ignores the seed");
    const trainA = run({ training: true, seed: 1 });
    assert.deepEqual(run({ training: true, seed: 1 }), trainA, "same seed, same masks");
    assert.notDeepEqual(run({ training: true, seed: 2 }), trainA, "another seed, other masks");
    assert.notDeepEqual(trainA, evalA, "dropout is active in training");
    assert.notDeepEqual(run({ training: true }), run({ training: true }), "unseeded calls draw new masks");
    for (const rates of [{ drop_rate: 0.3 }, { attn_drop_rate: 0.3 }, { drop_path_rate: 0.5 }]) {
      const m = createModel(config({ num_classes: 3, depth: 3, ...rates }), { seed: 0 });
      m.loadStateDict(model.stateDict());
      const train = tf.tidy(() => Array.from(logitsOf(m.forward(x, { training: true, seed: 3 })).dataSync()));
      const evalOut = tf.tidy(() => Array.from(logitsOf(m.forward(x, { training: false })).dataSync()));
      assert.notDeepEqual(train, evalOut, `${JSON.stringify(rates)} changes training outputs`);
      m.dispose();
    }
    const plain = createModel(config({ num_classes: 3, depth: 3 }), { seed: 0 });
    plain.loadStateDict(model.stateDict());
    const plainTrain = tf.tidy(() =>
      Array.from(logitsOf(plain.forward(x, { training: true, seed: 3 })).dataSync()),
    );
    assert.deepEqual(plainTrain, evalA, "with every rate 0, training = eval");
    tf.dispose(x);
    model.dispose();
    plain.dispose();
  });

  test("distilled: training returns both heads, eval their mean", () => {
    const cfg = config({ num_classes: 4, distilled: true });
    const model = createModel(cfg, { seed: 0 });
    model.loadStateDict(o1Weights(model, 1));
    const x = images(cfg, 3, 2);
    const train = model.forward(x, { training: true, seed: 0 });
    assert.ok(!(train instanceof tf.Tensor));
    assert.deepEqual(train.logits.shape, [3, 4]);
    assert.notDeepEqual(train.logits.dataSync(), train.distLogits.dataSync());
    const evalOut = model.forward(x, { training: false }) as tf.Tensor2D;
    const mean = tf.tidy(() => tf.div(tf.add(train.logits, train.distLogits), 2));
    assert.deepEqual(evalOut.dataSync(), mean.dataSync());
    tf.dispose([x, train.logits, train.distLogits, evalOut, mean]);
    model.dispose();
  });
});

describe("state dict", () => {
  test("num_classes 0: no head parameters, forward returns the pooled features", () => {
    const cfg = config({ num_classes: 0, representation_size: 6 });
    const model = createModel(cfg, { seed: 0 });
    assert.ok(!model.namedParameters().some(([name]) => name.startsWith("head")));
    const x = images(cfg, 2, 1);
    const out = model.forward(x, { training: false }) as tf.Tensor2D;
    const pooled = tf.tidy(
      () => model.forwardHead(model.forwardFeatures(x), { preLogits: true }) as tf.Tensor2D,
    );
    assert.deepEqual(out.shape, [2, 6]);
    assert.deepEqual(out.dataSync(), pooled.dataSync());
    tf.dispose([x, out, pooled]);
    model.dispose();
  });

  test("save -> load round trip gives identical logits", (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-model-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const cfg = config({ num_classes: 5, distilled: true });
    const a = createModel(cfg, { seed: 1 });
    a.loadStateDict(o1Weights(a, 1));
    const file = path.join(dir, "m.safetensors");
    writeSafetensors(file, a.stateDict());
    const b = createModel(cfg, { seed: 2 });
    b.loadStateDict(readSafetensors(file).tensors, { source: file });
    const x = images(cfg, 2, 3);
    const [la, lb] = [a, b].map((m) => m.forward(x, { training: false }) as tf.Tensor2D);
    assert.deepEqual(lb.dataSync(), la.dataSync());
    tf.dispose([x, la, lb]);
    a.dispose();
    b.dispose();
  });

  test("missing, unexpected and mis-shaped keys are DataErrors naming the key; the model is unchanged", () => {
    const model = createModel(config({ num_classes: 3 }), { seed: 0 });
    const good = model.stateDict();
    const without = new Map(good);
    without.delete("blocks.1.mlp.fc2.bias");
    assert.throws(
      () => model.loadStateDict(without, { source: "x.safetensors" }),
      (e: Error) => {
        assert.ok(e instanceof DataError);
        assert.match(e.message, /^x\.safetensors: missing key\(s\).*blocks\.1\.mlp\.fc2\.bias/);
        return true;
      },
    );
    const extra = new Map(good).set("head_dist.weight", { shape: [3, 8], data: new Float32Array(24) });
    assert.throws(() => model.loadStateDict(extra), /unexpected key\(s\).*head_dist\.weight/);
    assert.deepEqual(model.loadStateDict(extra, { strict: false }), {
      missing: [],
      unexpected: ["head_dist.weight"],
    });
    const misshaped = new Map(good).set("pos_embed", { shape: [1, 10, 8], data: new Float32Array(80) });
    misshaped.set("head.bias", { shape: [3], data: new Float32Array([9, 9, 9]) });
    assert.throws(
      () => model.loadStateDict(misshaped, { strict: false }),
      (e: Error) =>
        e instanceof DataError &&
        /pos_embed has shape \[1,10,8\] but the model's is \[1,5,8\]/.test(e.message),
    );
    assert.deepEqual(
      model.stateDict().get("head.bias"),
      good.get("head.bias"),
      "nothing written by a failed load",
    );
    model.dispose();
  });
});

describe("errors", () => {
  test("patchEmbed names the bad input dimension", () => {
    const model = createModel(config({ num_classes: 3 }), { seed: 0 });
    const cases: [[number, number, number, number], RegExp][] = [
      [[1, 30, 8, 3], /^patchEmbed: input height 30 is not a multiple of patch_size 4$/],
      [[1, 8, 6, 3], /^patchEmbed: input width 6 is not a multiple of patch_size 4$/],
      [[1, 8, 8, 1], /^patchEmbed: input has 1 channels but in_chans is 3$/],
      [[1, 16, 16, 3], /^patchEmbed: input is 16x16 but img_size is 8/],
    ];
    for (const [shape, message] of cases) {
      const x = tf.zeros(shape) as tf.Tensor4D;
      assert.throws(
        () => model.forward(x, { training: false }),
        (e: Error) => e instanceof DataError && message.test(e.message),
      );
      x.dispose();
    }
    model.dispose();
  });

  test("impossible configs are ConfigErrors naming the key", () => {
    const cases: [Partial<ModelConfig>, RegExp][] = [
      [{ embed_dim: 10, num_heads: 3 }, /model\.num_heads: embed_dim 10 is not divisible by num_heads 3/],
      [{ img_size: 10 }, /model\.patch_size: img_size 10 is not a multiple of patch_size 4/],
      [{ class_token: false }, /model\.class_token/],
      [{ distilled: true, global_pool: "avg" }, /model\.global_pool/],
      [{ distilled: true, representation_size: 4 }, /model\.representation_size/],
    ];
    for (const [overrides, message] of cases) {
      assert.throws(
        () => modelStats(ModelConfigSchema.parse({ ...config({ num_classes: 2 }), ...overrides }), 2),
        (e: Error) => e instanceof ConfigError && message.test(e.message),
      );
    }
  });
});

describe("modelStats", () => {
  test("parameter counts equal timm's", () => {
    const timm: [string, number][] = [
      ["vit_tiny_patch16_224", 5_717_416],
      ["vit_small_patch16_224", 22_050_664],
      ["vit_base_patch16_224", 86_567_656],
      // distilled: + dist_token, one pos_embed row and head_dist
      ["deit_tiny_distilled_patch16_224", 5_717_416 + 192 + 192 + 192 * 1000 + 1000],
    ];
    for (const [name, params] of timm) {
      const preset = findPreset(name)!;
      assert.equal(
        modelStats(ModelConfigSchema.parse(preset.model), preset.num_classes).params,
        params,
        name,
      );
    }
  });

  test("GFLOPs (multiply-accumulates, timm/fvcore/DeiT convention) match DeiT's table", () => {
    for (const [name, gflops] of [
      ["deit_tiny_patch16_224", "1.3"],
      ["deit_small_patch16_224", "4.6"],
      ["deit_base_patch16_224", "17.6"],
    ]) {
      const preset = findPreset(name)!;
      assert.equal(
        modelStats(ModelConfigSchema.parse(preset.model), preset.num_classes).gflops.toFixed(1),
        gflops,
      );
    }
  });

  test("parameter counts equal the fixtures' timm models and the allocated model", () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, "manifest.json"), "utf8")) as {
      cases: { json: string }[];
    };
    for (const c of manifest.cases) {
      const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, c.json), "utf8"));
      const cfg = ModelConfigSchema.parse({ ...spec.timm_kwargs, distilled: spec.distilled });
      const { params } = modelStats(cfg, spec.timm_kwargs.num_classes);
      assert.equal(params, spec.derived.num_params, c.json);
      const model = createModel({ ...cfg, num_classes: spec.timm_kwargs.num_classes }, { seed: 0 });
      assert.equal(
        model.namedParameters().reduce((n, [, v]) => n + v.size, 0),
        params,
      );
      model.dispose();
    }
  });
});

describe("vit models", () => {
  test("lists every preset with parameter counts from the built model", async () => {
    const rows = JSON.parse(await listModels(true)) as { name: string; params: number; gflops: number }[];
    assert.equal(rows.length, PRESETS.length);
    const base = rows.find((r) => r.name === "vit_base_patch16_224")!;
    assert.equal(base.params, 86_567_656);
    assert.equal(base.gflops.toFixed(1), "17.6");
    const table = await listModels(false);
    assert.match(table, /^name +embed_dim +depth +heads +img +params +GFLOPs\n/);
    assert.match(table, /\nvit_tiny_patch16_224 +192 +12 +3 +224 +5,717,416 +1\.25\n/);
  });
});
