/**
 * Numeric parity with the real timm code, for every case the fixture folder lists
 * (test/fixtures/timm-parity, README there): weights load by their timm names, and the eval
 * forward matches logits, pre_logits, every recorded sub-module output and, where a case has
 * them, the distilled heads and the gradients of the cross-entropy loss. On cpu and on wasm.
 *
 * Tolerances are the README's for float32 CPU backends: 1e-5 + 1e-5|x| on logits, pre_logits and
 * the loss; 1e-4 + 1e-4|x| on intermediates and gradients.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { before, describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { ModelConfigSchema } from "../src/config/schema.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { createModel, type VisionTransformer } from "../src/model/index.js";
import { assertClose, FIXTURES } from "./support.js";

const TIGHT = 1e-5;
const LOOSE = 1e-4;

interface CaseSpec {
  distilled: boolean;
  timm_kwargs: Record<string, unknown> & { num_classes: number };
  representation_size: number | null;
  files: { state_dict: string; input: string; intermediates: string; grads?: string };
  input: { shape: number[]; layout: string };
  expected: Record<string, unknown>;
  loss?: { labels: number[]; loss: number };
}

const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, "manifest.json"), "utf8")) as {
  cases: { name: string; json: string }[];
};

function flat(values: unknown): Float32Array {
  return Float32Array.from((values as number[]).flat(Number.POSITIVE_INFINITY) as number[]);
}

/** Asserts |got - want| <= tol + tol|want| everywhere; returns the largest |got - want|. */
function buildModel(spec: CaseSpec, source: string): VisionTransformer {
  const cfg = ModelConfigSchema.parse({
    ...spec.timm_kwargs,
    distilled: spec.distilled,
    representation_size: spec.representation_size,
    drop_path_rate: 0,
  });
  const model = createModel({ ...cfg, num_classes: spec.timm_kwargs.num_classes }, { seed: 0 });
  model.loadStateDict(readSafetensors(source).tensors, { source });
  return model;
}

/** The fixture's NCHW input as the NHWC batch the model takes. */
function readInput(spec: CaseSpec): tf.Tensor4D {
  assert.equal(spec.input.layout, "NCHW");
  const bytes = fs.readFileSync(path.join(FIXTURES, spec.files.input));
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const [b, c, h, w] = spec.input.shape;
  return tf.tidy(() => tf.transpose(tf.tensor4d(data, [b, c, h, w]), [0, 2, 3, 1]));
}

/** Mean cross-entropy, as F.cross_entropy(logits, labels). */
function crossEntropy(logits: tf.Tensor2D, labels: number[]): tf.Scalar {
  const oneHot = tf.oneHot(tf.tensor1d(labels, "int32"), logits.shape[1]);
  return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)), 1))) as tf.Scalar;
}

/** Fixture keys with nothing to compare to here: the input, timm's Identity `norm_pre`, pos_embed resampling (test/resample.test.ts). */
function isModuleOutput(key: string): boolean {
  return (
    !["input", "norm_pre", "features", "pre_logits", "logits"].includes(key) && !key.startsWith("pos_embed_")
  );
}

describe("state_dict names and shapes", () => {
  before(async () => {
    await tf.setBackend("cpu");
  });

  for (const c of manifest.cases) {
    test(c.name, () => {
      const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, c.json), "utf8")) as CaseSpec;
      const file = readSafetensors(path.join(FIXTURES, spec.files.state_dict)).tensors;
      const model = buildModel(spec, path.join(FIXTURES, spec.files.state_dict));
      const ours = new Map(model.namedParameters().map(([name, v]) => [name, v.shape]));
      assert.deepEqual([...ours.keys()].sort(), [...file.keys()].sort());
      for (const [name, t] of file) assert.deepEqual(ours.get(name), t.shape, name);
      assert.deepEqual([...ours.keys()], [...file.keys()], "state_dict order");
      model.dispose();
    });
  }
});

for (const backend of ["cpu", "wasm"]) {
  describe(`timm parity on ${backend}`, () => {
    before(async () => {
      assert.ok(await tf.setBackend(backend), `backend ${backend} did not start`);
    });

    for (const c of manifest.cases) {
      const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, c.json), "utf8")) as CaseSpec;
      const weights = path.join(FIXTURES, spec.files.state_dict);

      test(`${c.name}: logits, pre_logits and every intermediate`, (t) => {
        const model = buildModel(spec, weights);
        const x = readInput(spec);
        const captured = new Map<string, { shape: number[]; data: Float32Array }>();
        const logits = model.forward(x, {
          training: false,
          capture: (name, y) => captured.set(name, { shape: y.shape, data: y.dataSync() as Float32Array }),
        }) as tf.Tensor2D;
        const features = model.forwardFeatures(x);
        const preLogits = model.forwardHead(features, { preLogits: true }) as tf.Tensor2D;

        const errLogits = assertClose(logits.dataSync(), flat(spec.expected.logits), TIGHT, "logits");
        const errPre = assertClose(preLogits.dataSync(), flat(spec.expected.pre_logits), TIGHT, "pre_logits");
        const want = readSafetensors(path.join(FIXTURES, spec.files.intermediates)).tensors;
        let errInter = assertClose(features.dataSync(), want.get("features")!.data, LOOSE, "features");
        let compared = 0;
        for (const [key, w] of want) {
          if (!isModuleOutput(key)) continue;
          const got = captured.get(key);
          assert.ok(got, `no module output "${key}" (captured: ${[...captured.keys()].join(", ")})`);
          assert.deepEqual(got.shape, w.shape, `${key}: shape`);
          errInter = Math.max(errInter, assertClose(got.data, w.data, LOOSE, key));
          compared++;
        }
        assert.ok(compared >= 12, `only ${compared} intermediates compared`);
        t.diagnostic(
          `max |diff|: logits ${errLogits.toExponential(2)}, pre_logits ${errPre.toExponential(2)}, ` +
            `${compared} intermediates ${errInter.toExponential(2)}`,
        );
        tf.dispose([x, logits, features, preLogits]);
        model.dispose();
      });

      if (spec.distilled) {
        test(`${c.name}: both heads in training, their mean in eval, token features`, () => {
          const model = buildModel(spec, weights);
          const x = readInput(spec);
          // Every drop rate is 0, so training mode differs from eval only in what the head returns.
          const out = model.forward(x, { training: true, seed: 1 });
          assert.ok(!(out instanceof tf.Tensor), "training returns {logits, distLogits}");
          assertClose(out.logits.dataSync(), flat(spec.expected.head_logits), TIGHT, "head_logits");
          assertClose(
            out.distLogits.dataSync(),
            flat(spec.expected.head_dist_logits),
            TIGHT,
            "head_dist_logits",
          );
          const evalLogits = model.forward(x, { training: false }) as tf.Tensor2D;
          assertClose(evalLogits.dataSync(), flat(spec.expected.logits_eval_avg), TIGHT, "logits_eval_avg");
          const features = model.forwardFeatures(x);
          const [b, , d] = features.shape;
          const tokens = tf.tidy(() =>
            [0, 1].map((i) => tf.slice(features, [0, i, 0], [b, 1, d]).dataSync()),
          );
          assertClose(tokens[0], flat(spec.expected.cls_token_features), LOOSE, "cls_token_features");
          assertClose(tokens[1], flat(spec.expected.dist_token_features), LOOSE, "dist_token_features");
          tf.dispose([x, out.logits, out.distLogits, evalLogits, features]);
          model.dispose();
        });
      }

      const loss = spec.loss;
      const gradsFile = spec.files.grads;
      if (loss && gradsFile) {
        test(`${c.name}: cross-entropy loss and the gradient of every parameter`, (t) => {
          const model = buildModel(spec, weights);
          const x = readInput(spec);
          const params = model.namedParameters();
          const nameOf = new Map(params.map(([name, v]) => [v.name, name]));
          const { value, grads } = tf.variableGrads(
            () => crossEntropy(model.forward(x, { training: false }) as tf.Tensor2D, loss.labels),
            params.map(([, v]) => v),
          );
          assertClose([value.dataSync()[0]], [loss.loss], TIGHT, "loss");
          const want = readSafetensors(path.join(FIXTURES, gradsFile)).tensors;
          assert.equal(Object.keys(grads).length, want.size, "one gradient per parameter");
          let worst = 0;
          for (const [vname, g] of Object.entries(grads)) {
            const name = nameOf.get(vname)!;
            const w = want.get(name);
            assert.ok(w, `no fixture gradient for ${name}`);
            assert.deepEqual(g.shape, w.shape, `${name}: gradient shape`);
            worst = Math.max(worst, assertClose(g.dataSync(), w.data, LOOSE, `grad ${name}`));
          }
          t.diagnostic(`max |diff| over ${want.size} gradients: ${worst.toExponential(2)}`);
          tf.dispose([x, value, ...Object.values(grads)]);
          model.dispose();
        });
      }
    }
  });
}
