/**
 * Hostile input (issue 15): holes 2, 3, 5, 6 and 7 the battery found, each with named tests that
 * failed on the code before its fix. Hole 1 (predict/eval on batches of only bad images) is in
 * eval_cli.test.ts, hole 4 (model sizes) in memory.test.ts, the failed checkpoint write in
 * train_cli.test.ts and the parser fuzzing in fuzz.test.ts.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { loadConfig, resolveConfig } from "../src/config/index.js";
import { DataConfigSchema } from "../src/config/schema.js";
import { scanImageFolder } from "../src/data/image_folder.js";
import { loadDatasets } from "../src/data/sources.js";
import { ConfigError, DataError, VitError } from "../src/errors.js";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import { createModel } from "../src/model/vision_transformer.js";
import { expandInputs } from "../src/predict/inputs.js";
import { loadTeacher } from "../src/train/teacher.js";
import { readRunState, writeWeights } from "../src/weights/checkpoint.js";
import { readCheckpoint } from "../src/weights/export.js";
import { importWeights } from "../src/weights/import.js";
import { loadInferenceModel } from "../src/weights/model_source.js";
import { readPretrained } from "../src/weights/pretrained.js";
import { createRunDir } from "../src/weights/run_dir.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vit-reliability-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const dirFor = (name: string) => fs.mkdtempSync(path.join(tmp, `${name}-`));

/** Empty files with image names: listing never decodes them. */
function touch(root: string, files: string[]): void {
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.writeFileSync(path.join(root, f), "");
  }
}

/** Runs `fn` with stderr captured; returns its result and what it wrote. */
function capturingStderr<T>(fn: () => T): { result: T; stderr: string } {
  const write = process.stderr.write;
  let stderr = "";
  process.stderr.write = ((chunk: string) => {
    stderr += chunk;
    return true;
  }) as typeof process.stderr.write;
  try {
    return { result: fn(), stderr };
  } finally {
    process.stderr.write = write;
  }
}

describe("hole 2: directory symlink cycles", () => {
  test("ImageFolder visits each real folder once and names the skipped links", () => {
    const root = dirFor("cycle");
    touch(root, ["cat/a.png", "cat/b.png", "dog/c.png", "dog/sub/d.png"]);
    fs.symlinkSync("..", path.join(root, "cat", "up"));
    fs.symlinkSync(".", path.join(root, "dog", "sub", "self"));
    fs.symlinkSync("../dog", path.join(root, "cat", "to_dog"));
    const { result: ds, stderr } = capturingStderr(() => scanImageFolder(root));
    const warnings = stderr.trimEnd().split("\n");
    assert.deepEqual(
      ds.samples.map((s) => [path.relative(root, s.path), ds.classes[s.label]]),
      [
        ["cat/a.png", "cat"],
        ["cat/b.png", "cat"],
        ["dog/c.png", "dog"],
        ["dog/sub/d.png", "dog"],
      ],
    );
    assert.equal(warnings.length, 3, warnings.join("\n"));
    for (const link of ["cat/up", "cat/to_dog", "dog/sub/self"]) {
      assert.ok(
        warnings.some((w) => w.startsWith(`warning: skipping ${path.join(root, link)}: it leads to `)),
        `${link} in ${warnings.join("\n")}`,
      );
    }
  });

  test("a file reachable twice never lands in both train and val", async () => {
    const root = dirFor("split");
    touch(root, [
      "train/cat/a.png",
      "train/cat/b.png",
      "train/dog/c.png",
      "train/dog/d.png",
      "val/cat/e.png",
      "val/dog/g.png",
    ]);
    fs.symlinkSync(path.join(root, "train", "dog", "c.png"), path.join(root, "val", "dog", "c_again.png"));
    fs.symlinkSync(path.join(root, "train"), path.join(root, "val", "dog", "all_of_train"));
    const { result, stderr } = capturingStderr(() =>
      loadDatasets(DataConfigSchema.parse({ train: path.join(root, "train"), val: path.join(root, "val") }), {
        seed: 0,
        imgSize: 32,
      }),
    );
    const ds = await result;
    const real = (s: { path: string }) => fs.realpathSync(s.path);
    const train = new Set(ds.train.samples.map(real));
    assert.ok(
      ds.val.samples.every((s) => !train.has(real(s))),
      "no file in both",
    );
    assert.deepEqual(
      ds.val.samples.map((s) => path.relative(root, s.path)),
      ["val/cat/e.png", "val/dog/g.png"],
    );
    assert.match(stderr, /^warning: skipping .*val\/dog\/c_again\.png: the same file as one already listed/m);
    assert.match(stderr, /^warning: skipping .*val\/dog\/all_of_train: it leads to /m);
  });

  test("a cycle inside one class with val_split: every image once, split disjoint", async () => {
    const root = dirFor("valsplit");
    touch(root, ["cat/a.png", "cat/b.png", "cat/c.png", "dog/d.png", "dog/e.png", "dog/f.png"]);
    fs.symlinkSync("..", path.join(root, "cat", "up"));
    const { result } = capturingStderr(() =>
      loadDatasets(DataConfigSchema.parse({ train: root, val_split: 0.34 }), { seed: 0, imgSize: 32 }),
    );
    const ds = await result;
    const all = [...ds.train.samples, ...ds.val.samples].map((s) => s.path);
    assert.equal(all.length, 6);
    assert.equal(new Set(all).size, 6);
  });

  test("a CSV manifest naming one file twice (or by a link) keeps it once", async () => {
    const root = dirFor("csv");
    touch(root, ["a.png", "b.png", "c.png", "d.png"]);
    fs.symlinkSync("a.png", path.join(root, "a_link.png"));
    fs.writeFileSync(
      path.join(root, "m.csv"),
      "path,label\na.png,cat\nb.png,cat\nc.png,dog\nd.png,dog\na.png,cat\na_link.png,cat\n",
    );
    const { result, stderr } = capturingStderr(() =>
      loadDatasets(DataConfigSchema.parse({ train: path.join(root, "m.csv"), val_split: 0.5 }), {
        seed: 0,
        imgSize: 32,
      }),
    );
    const ds = await result;
    const all = [...ds.train.samples, ...ds.val.samples].map((s) => fs.realpathSync(s.path));
    assert.equal(all.length, 4);
    assert.equal(new Set(all).size, 4);
    assert.equal(
      stderr.match(/^warning: skipping .*a(_link)?\.png: the same file as one already listed/gm)?.length,
      2,
    );
  });

  test("predict on a folder holding self -> . lists each image once and says so", () => {
    const root = dirFor("predict");
    touch(root, ["a.png", "b.jpg"]);
    fs.symlinkSync(".", path.join(root, "self"));
    const { result, stderr } = capturingStderr(() => expandInputs([root, path.join(root, "self")]));
    assert.deepEqual(result.files, [path.join(root, "a.png"), path.join(root, "b.jpg")]);
    assert.match(stderr, /^warning: skipping .*self: it leads to /m);
    // A pattern reaching one file through the folder and through the link.
    const viaGlob = capturingStderr(() => expandInputs([`${root}/*/a.png`, `${root}/a.png`]));
    assert.deepEqual(viaGlob.result.files, [path.join(root, "self", "a.png")]);
    assert.match(viaGlob.stderr, /^warning: skipping .*a\.png: the same file as one already listed/m);
  });
});

describe("hole 3: a dataset with one class", () => {
  test("an ImageFolder or a CSV with one class: one error naming it", async () => {
    const root = dirFor("oneclass");
    touch(root, ["images/cat/a.png", "images/cat/b.png"]);
    fs.writeFileSync(path.join(root, "m.csv"), "path,label\nimages/cat/a.png,cat\nimages/cat/b.png,cat\n");
    for (const train of [path.join(root, "images"), path.join(root, "m.csv")]) {
      await assert.rejects(
        loadDatasets(DataConfigSchema.parse({ train, val_split: 0.5 }), { seed: 0, imgSize: 32 }),
        (err: Error) => {
          assert.equal(err.name, "DataError");
          assert.equal(err.message, `${train}: found 1 class (cat); a classifier needs at least two classes`);
          return true;
        },
      );
    }
  });
});

describe("hole 5: a YAML alias bomb", () => {
  test("is a ConfigError (exit 2) naming the file", () => {
    const root = dirFor("bomb");
    const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      lines.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(",")}]`);
    }
    const file = path.join(root, "bomb.yaml");
    fs.writeFileSync(file, `${lines.join("\n")}\n`);
    assert.throws(
      () => loadConfig(file),
      (err: Error) => {
        assert.ok(err instanceof ConfigError, `${err.name}: ${err.message}`);
        assert.equal(err.exitCode, 2);
        assert.match(err.message, new RegExp(`^${file}: .*alias`, "i"));
        assert.doesNotMatch(err.message, /\n/);
        return true;
      },
    );
  });
});

/** The first bytes of what torch.save writes: a zip whose first member is archive/data.pkl. */
function torchZip(): Buffer {
  const name = Buffer.from("archive/data.pkl");
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(name.length, 26);
  return Buffer.concat([local, name, Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]), Buffer.alloc(64)]);
}

describe("hole 7: a PyTorch file where weights are read", () => {
  const root = dirFor("torch");
  const zip = path.join(root, "model.safetensors");
  const pickle = path.join(root, "legacy.safetensors");
  const npz = path.join(root, "renamed.npz");
  fs.writeFileSync(zip, torchZip());
  fs.writeFileSync(pickle, Buffer.concat([Buffer.from([0x80, 0x02, 0x8a, 0x0a]), Buffer.alloc(64, 1)]));
  fs.writeFileSync(npz, torchZip());
  const says = (file: string, kind: RegExp) => (err: Error) => {
    assert.ok(err instanceof VitError, `${err.name}: ${err.message}`);
    assert.equal(err.exitCode, 1);
    assert.doesNotMatch(err.message, /\n/);
    assert.ok(err.message.startsWith(`${file} is `), err.message);
    assert.match(err.message, kind);
    assert.match(
      err.message,
      /convert it to safetensors .*clean_checkpoint\.py --safetensors.*never unpickles/,
    );
    return true;
  };

  test("readSafetensors and readPretrained name the zip and the pickle", () => {
    assert.throws(() => readSafetensors(zip), says(zip, /PyTorch checkpoint \(a torch\.save zip/));
    assert.throws(() => readSafetensors(pickle), says(pickle, /Python pickle/));
    assert.throws(() => readPretrained(zip), says(zip, /PyTorch checkpoint/));
    assert.throws(() => readPretrained(npz), says(npz, /PyTorch checkpoint/));
  });

  test("predict/eval's model loading says so with and without --model", () => {
    assert.throws(() => loadInferenceModel({ checkpoint: zip }), says(zip, /PyTorch checkpoint/));
    assert.throws(
      () => loadInferenceModel({ checkpoint: zip, preset: "vit_tiny_patch16_224" }),
      says(zip, /PyTorch checkpoint/),
    );
    assert.throws(() => loadInferenceModel({ checkpoint: pickle }), says(pickle, /Python pickle/));
  });

  test("an output path under a file: one sentence naming that file, no errno", () => {
    const blocker = path.join(root, "a-file");
    fs.writeFileSync(blocker, "x");
    for (const write of [
      () => writeSafetensors(path.join(blocker, "w.safetensors"), new Map()),
      () => createRunDir(path.join(blocker, "runs"), "r"),
      () => createRunDir(blocker, "r"),
    ]) {
      assert.throws(write, (err: Error) => {
        assert.ok(err instanceof VitError, `${err.name}: ${err.message}`);
        assert.match(err.message, new RegExp(`${blocker} is a file, not a folder$`));
        assert.doesNotMatch(err.message, /ENOTDIR|EEXIST|\n/);
        return true;
      });
    }
  });
});

describe("hole 6: non-finite weights", () => {
  const root = dirFor("nan");
  const cfg = resolveConfig(
    { model: { img_size: 8, patch_size: 4, embed_dim: 8, depth: 1, num_heads: 2, mlp_ratio: 1 } },
    { source: "test" },
  );
  const model = createModel({ ...cfg.model, num_classes: 2 }, { seed: 0 });
  const weights = model.stateDict();
  model.dispose();
  const broken = new Map(weights);
  const qkv = weights.get("blocks.0.attn.qkv.weight")!;
  const bad = qkv.data.slice();
  bad[5] = Number.NaN;
  broken.set("blocks.0.attn.qkv.weight", { shape: qkv.shape, data: bad });
  const meta = { format: "pt", config: JSON.stringify(cfg), classes: JSON.stringify(["a", "b"]), step: "3" };
  const ckpt = path.join(root, "nan.safetensors");
  writeSafetensors(ckpt, broken, meta);
  const names = (file: string) => (err: Error) => {
    assert.ok(err instanceof DataError, `${err.name}: ${err.message}`);
    assert.equal(
      err.message,
      `${file}: tensor "blocks.0.attn.qkv.weight" holds NaN (at flat index 5 of ${bad.length}); ` +
        "only finite weights are loaded or saved (a diverged run?)",
    );
    return true;
  };

  test("a checkpoint (predict/eval, teacher, export, resume) names the first non-finite tensor", async () => {
    assert.throws(() => loadInferenceModel({ checkpoint: ckpt }), names(ckpt));
    assert.throws(() => readCheckpoint(ckpt), names(ckpt));
    const state = path.join(root, "nan.state.safetensors");
    writeSafetensors(state, new Map(), { trainer: "{}", step: "3" });
    assert.throws(() => readRunState(ckpt, state), names(ckpt));
    const student = { classes: ["a", "b"], imgSize: 8, inChans: 3, mean: [0, 0, 0], std: [1, 1, 1] };
    await assert.rejects(loadTeacher(ckpt, student), names(ckpt));
  });

  test("plain weights (pretrained, import) with Inf are refused", () => {
    const plain = path.join(root, "plain.safetensors");
    const inf = new Map(weights);
    const head = weights.get("head.bias")!;
    inf.set("head.bias", { shape: head.shape, data: Float32Array.from([0, Number.POSITIVE_INFINITY]) });
    writeSafetensors(plain, inf);
    const infinite = (err: Error) => {
      assert.ok(err instanceof DataError);
      assert.match(
        err.message,
        new RegExp(`^${plain}: tensor "head.bias" holds Infinity \\(at flat index 1 of 2\\)`),
      );
      return true;
    };
    assert.throws(() => readPretrained(plain), infinite);
    assert.throws(
      () => importWeights(plain, { out: path.join(root, "imported.safetensors"), log: () => {} }),
      infinite,
    );
    assert.ok(!fs.existsSync(path.join(root, "imported.safetensors")));
  });

  test("a tfjs teacher with NaN weights is refused, naming the weight", async () => {
    const dense = tf.sequential({
      layers: [tf.layers.flatten({ inputShape: [8, 8, 3] }), tf.layers.dense({ units: 2 })],
    });
    const [kernel] = dense.layers[1].getWeights();
    const nanBias = tf.tensor1d([Number.NaN, 0]);
    dense.layers[1].setWeights([kernel, nanBias]);
    nanBias.dispose();
    const dir = path.join(root, "tfjs");
    fs.mkdirSync(dir);
    await dense.save(
      tf.io.withSaveHandler(async (a) => {
        fs.writeFileSync(path.join(dir, "w.bin"), Buffer.from(tf.io.concatenateArrayBuffers(a.weightData!)));
        const json = {
          modelTopology: a.modelTopology,
          format: a.format,
          weightsManifest: [{ paths: ["w.bin"], weights: a.weightSpecs! }],
        };
        fs.writeFileSync(path.join(dir, "model.json"), JSON.stringify(json));
        return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(a) };
      }),
    );
    dense.dispose();
    const student = { classes: ["a", "b"], imgSize: 8, inChans: 3, mean: [0, 0, 0], std: [1, 1, 1] };
    await assert.rejects(loadTeacher(dir, student), (err: Error) => {
      assert.ok(err instanceof DataError, `${err.name}: ${err.message}`);
      assert.match(err.message, /model\.json: tensor "dense_\w+\/bias" holds NaN \(at flat index 0 of 2\)/);
      return true;
    });
  });

  test("a run never saves non-finite weights; the previous checkpoint stays", () => {
    const file = path.join(root, "last.safetensors");
    const m = { config: cfg, classes: ["a", "b"], epoch: 0, step: 1 };
    writeWeights(file, weights, m);
    const before = fs.readFileSync(file);
    assert.throws(() => writeWeights(file, broken, { ...m, step: 2 }), names(`not saving ${file}`));
    assert.deepEqual(fs.readFileSync(file), before);
  });
});
