/**
 * `vit export` end to end: a checkpoint built from a timm-parity fixture goes out as timm weights +
 * config.json (the exact state dict and kwargs timm built the fixture from) and as ONNX (which
 * onnxruntime runs to timm's logits).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { resolveConfig } from "../src/config/index.js";
import { readSafetensors } from "../src/io/safetensors.js";
import type { TensorData } from "../src/tensor.js";
import { writeWeights } from "../src/weights/checkpoint.js";
import { FIXTURES, runVit } from "./support.js";

const vit = (args: string[]) => runVit(args, { cwd: dir });

const caseName: string = JSON.parse(fs.readFileSync(path.join(FIXTURES, "manifest.json"), "utf8")).cases[0]
  .name;
const fixture = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${caseName}.json`), "utf8"));
const kwargs = fixture.timm_kwargs;
const stateDict = readSafetensors(path.join(FIXTURES, fixture.files.state_dict)).tensors;
const classes = Array.from({ length: kwargs.num_classes }, (_, i) => `class_${i}`);

/** A checkpoint as the trainer writes it, holding the fixture's weights. */
function writeCheckpoint(
  file: string,
  model: Record<string, unknown>,
  weights: Map<string, TensorData>,
): void {
  const { num_classes: _, ...arch } = kwargs;
  const config = resolveConfig(
    {
      model: { ...arch, ...model, distilled: fixture.distilled, num_classes: kwargs.num_classes },
      data: { mean: Array(kwargs.in_chans).fill(0.5), std: Array(kwargs.in_chans).fill(0.25) },
    },
    { source: "test" },
  );
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeWeights(file, weights, { config, classes, epoch: 3, step: 120 });
}

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-export-"));
  writeCheckpoint(path.join(dir, "run", "checkpoints", "last.safetensors"), {}, stateDict);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe(`vit export (${caseName} fixture as a checkpoint)`, () => {
  test("--format timm writes timm's state dict and a config.json with the kwargs timm used", async () => {
    const r = await vit(["export", "--run", "run", "--format", "timm", "--out", "hub"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), ["hub/model.safetensors", "hub/config.json"]);
    const files = ["hub/model.safetensors", "hub/config.json"].map((f) => path.join(dir, f));

    const { tensors, metadata } = readSafetensors(files[0]);
    assert.deepEqual(metadata, { format: "pt" });
    assert.deepEqual([...tensors.keys()].sort(), [...stateDict.keys()].sort());
    for (const [key, t] of stateDict) {
      assert.deepEqual(tensors.get(key)!.shape, t.shape, key);
      assert.deepEqual(tensors.get(key)!.data, t.data, key);
    }

    const config = JSON.parse(fs.readFileSync(files[1], "utf8"));
    assert.deepEqual({ ...config.model_args, num_classes: config.num_classes }, kwargs);
    assert.equal(
      config.architecture,
      fixture.distilled ? "deit_tiny_distilled_patch16_224" : "vit_tiny_patch16_224",
    );
    assert.deepEqual(config.label_names, classes);
    assert.deepEqual(config.pretrained_cfg.input_size, [kwargs.in_chans, kwargs.img_size, kwargs.img_size]);
    assert.deepEqual(config.pretrained_cfg.std, Array(kwargs.in_chans).fill(0.25));
  });

  test("--out x.safetensors puts the config beside it as x.json", async () => {
    const r = await vit([
      "export",
      "--checkpoint",
      "run/checkpoints/last.safetensors",
      "--format",
      "timm",
      "--out",
      "out/vit.safetensors",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(dir, "out", "vit.safetensors")));
    assert.equal(
      JSON.parse(fs.readFileSync(path.join(dir, "out", "vit.json"), "utf8")).num_classes,
      kwargs.num_classes,
    );
  });

  test("--format onnx writes a model onnxruntime runs to timm's logits", async () => {
    const r = await vit(["export", "--run", "run", "--format", "onnx", "--out", "model.onnx"]);
    assert.equal(r.code, 0, r.stderr);
    const bytes = new Uint8Array(fs.readFileSync(path.join(dir, "model.onnx")));
    const input = new Float32Array(
      new Uint8Array(fs.readFileSync(path.join(FIXTURES, fixture.files.input))).buffer,
    );
    const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
    const { logits } = await session.run({
      pixel_values: new ort.Tensor("float32", input, fixture.input.shape),
    });
    await session.release();
    const expected: number[] = fixture.expected.logits.flat();
    assert.deepEqual(logits.dims, [fixture.input.shape[0], kwargs.num_classes]);
    expected.forEach((e, i) => {
      assert.ok(Math.abs((logits.data as Float32Array)[i] - e) <= 1e-5 + 1e-5 * Math.abs(e), `logits[${i}]`);
    });
  });

  test("a folder without checkpoints is a usage error (exit 2)", async () => {
    const r = await vit(["export", "--run", ".", "--format", "onnx", "--out", "x.onnx"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^--run \.: no checkpoints\/best\.safetensors or checkpoints\/last\.safetensors/);
  });

  test("weights that do not fit the stored config fail naming the file and tensors (exit 1)", async () => {
    writeCheckpoint(path.join(dir, "deeper.safetensors"), { depth: kwargs.depth + 1 }, stateDict);
    const r = await vit(["export", "--checkpoint", "deeper.safetensors", "--format", "timm", "--out", "d"]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`^deeper\\.safetensors: not the state dict of .*missing "blocks\\.${kwargs.depth}\\.`),
    );
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.ok(!fs.existsSync(path.join(dir, "d")));
  });
});
