/**
 * Inference on the onnxruntime engine through the Classifier eval and predict use: on every
 * timm-parity case (test/fixtures/timm-parity) the logits equal timm's within the fixture
 * README's float32 bound, 1e-5 + 1e-5|x|, and a distilled model's heads equal timm's heads.
 * On each device: cpu, and webgpu where a WebGPU adapter exists (the software one counts: Mesa's
 * llvmpipe through Vulkan, which .ci/run installs).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { before, describe, test } from "node:test";
import type { DeviceName } from "../src/config/schema.js";
import { ModelConfigSchema } from "../src/config/schema.js";
import { createClassifier } from "../src/engines/classifier.js";
import { type EngineChoice, selectEngine } from "../src/engines/select.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { createModel } from "../src/model/index.js";
import { assertClose, FIXTURES, webgpuSkip } from "./support.js";

const TOL = 1e-5;

interface CaseSpec {
  distilled: boolean;
  timm_kwargs: Record<string, unknown> & { num_classes: number };
  representation_size: number | null;
  files: { state_dict: string; input: string };
  input: { shape: number[]; layout: string };
  expected: Record<string, unknown>;
}

const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, "manifest.json"), "utf8")) as {
  cases: { name: string; json: string }[];
};

const flat = (values: unknown) =>
  Float32Array.from((values as number[]).flat(Number.POSITIVE_INFINITY) as number[]);

/** The fixture's NCHW input as the channels-last batch the loader makes. */
function channelsLast(spec: CaseSpec): Float32Array {
  assert.equal(spec.input.layout, "NCHW");
  const bytes = new Uint8Array(fs.readFileSync(path.join(FIXTURES, spec.files.input)));
  const x = new Float32Array(bytes.buffer);
  const [b, c, h, w] = spec.input.shape;
  const out = new Float32Array(x.length);
  for (let n = 0; n < b; n++)
    for (let ch = 0; ch < c; ch++)
      for (let p = 0; p < h * w; p++) out[(n * h * w + p) * c + ch] = x[(n * c + ch) * h * w + p];
  return out;
}

const DEVICES: [DeviceName, string | undefined][] = [
  ["cpu", undefined],
  ["webgpu", await webgpuSkip()],
];

for (const [device, skip] of DEVICES)
  describe(`onnxruntime inference on ${device} matches timm on every parity case`, { skip }, () => {
    let engine: EngineChoice;
    before(async () => {
      engine = await selectEngine("onnxruntime", { threads: 1, device });
    });

    test("the manifest lists cases, a distilled one among them", () => {
      const specs = manifest.cases.map((c) =>
        JSON.parse(fs.readFileSync(path.join(FIXTURES, c.json), "utf8")),
      );
      assert.ok(specs.length > 0);
      assert.ok(specs.some((s) => s.distilled));
    });

    for (const c of manifest.cases) {
      const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, c.json), "utf8")) as CaseSpec;
      test(c.name, async (t) => {
        const cfg = ModelConfigSchema.parse({
          ...spec.timm_kwargs,
          distilled: spec.distilled,
          representation_size: spec.representation_size,
        });
        const model = createModel({ ...cfg, num_classes: spec.timm_kwargs.num_classes }, { seed: 0 });
        const weights = path.join(FIXTURES, spec.files.state_dict);
        model.loadStateDict(readSafetensors(weights).tensors, { source: weights });
        const classifier = await createClassifier(engine, model);
        try {
          const out = await classifier.predictLogits(channelsLast(spec), spec.input.shape[0]);
          const worst = assertClose(out.logits, flat(spec.expected.logits), TOL, "logits");
          t.diagnostic(`max |onnxruntime on ${device} - timm| logits: ${worst.toExponential(2)}`);
          if (spec.distilled) {
            assert.ok(out.heads, "a distilled model's heads");
            assertClose(out.heads.head, flat(spec.expected.head_logits), TOL, "head_logits");
            assertClose(out.heads.head_dist, flat(spec.expected.head_dist_logits), TOL, "head_dist_logits");
          } else {
            assert.equal(out.heads, undefined);
          }
        } finally {
          await classifier.dispose();
        }
      });
    }
  });
