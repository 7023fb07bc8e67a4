import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import {
  type Config,
  ConfigSchema,
  loadConfig,
  resolveConfig,
  stringifyConfig,
} from "../src/config/index.js";
import { didYouMean, editDistance } from "../src/config/suggest.js";
import { ConfigError } from "../src/errors.js";

// Every test works in its own temp dir, made the working directory so messages name `x.yaml`.
const startDir = process.cwd();
let dir: string;
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "vit-config-"));
  process.chdir(dir);
});
after(() => {
  process.chdir(startDir);
  rmSync(dir, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
  writeFileSync(path.join(dir, name), text);
  return name;
}

/** The ConfigError lines loading `text` produces. */
function errorsOf(text: string, set: string[] = [], name = "x.yaml"): string[] {
  write(name, text);
  return errorLines(() => loadConfig(name, { set }));
}

function errorLines(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    assert.equal(err.exitCode, 2);
    return err.message.split("\n");
  }
  assert.fail("expected a ConfigError");
}

describe("config errors", () => {
  test("YAML syntax error reports file:line:col", () => {
    assert.deepEqual(errorsOf("model:\n  depth: 4\n  mean: [0.5, 0.5\ntrain: {}\n"), [
      "x.yaml:4:1: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ]);
  });

  test("duplicate key is a syntax error with line:col", () => {
    assert.deepEqual(errorsOf("train:\n  epochs: 3\n  epochs: 4\n"), ["x.yaml:3:3: Map keys must be unique"]);
  });

  test("tab indentation is a syntax error with line:col", () => {
    assert.deepEqual(errorsOf("model:\n\tdepth: 3\n"), ["x.yaml:2:1: Tabs are not allowed as indentation"]);
  });

  test("top level that is not a mapping", () => {
    assert.deepEqual(errorsOf("- 1\n- 2\n"), ["x.yaml: expected a mapping of config keys, got [1, 2]"]);
  });

  test("missing file", () => {
    assert.deepEqual(
      errorLines(() => loadConfig("nope.yaml")),
      ["nope.yaml: no such file"],
    );
  });

  test("unknown key suggests the closest known key", () => {
    assert.deepEqual(errorsOf("train:\n  batchsize: 8\n"), [
      'x.yaml: train.batchsize: unknown key (did you mean "batch_size"?)',
    ]);
    assert.deepEqual(errorsOf("modle:\n  depth: 2\n"), [
      'x.yaml: modle: unknown key (did you mean "model"?)',
    ]);
    assert.deepEqual(errorsOf("model:\n  drop_path: 0.1\n"), [
      'x.yaml: model.drop_path: unknown key (did you mean "drop_path_rate"?)',
    ]);
  });

  test("unknown key with no close match lists the known keys", () => {
    assert.deepEqual(errorsOf("runtime:\n  gpu: true\n"), [
      "x.yaml: runtime.gpu: unknown key (known keys: backend, threads, device)",
    ]);
  });

  test("wrong type quotes the value", () => {
    assert.deepEqual(errorsOf("train:\n  optimizer:\n    lr: fast\n"), [
      'x.yaml: train.optimizer.lr: expected a positive number, got "fast"',
    ]);
    assert.deepEqual(errorsOf("model:\n  qkv_bias: yes\n"), [
      'x.yaml: model.qkv_bias: expected true or false, got "yes"',
    ]);
    assert.deepEqual(errorsOf("train:\n  ema: 5\n"), [
      "x.yaml: train.ema: expected a mapping of keys or null, got 5",
    ]);
    assert.deepEqual(errorsOf("model:\n  num_classes: ten\n"), [
      'x.yaml: model.num_classes: expected a non-negative integer or null, got "ten"',
    ]);
  });

  test("out-of-range values name the range", () => {
    assert.deepEqual(errorsOf("model:\n  drop_rate: 1\n"), [
      "x.yaml: model.drop_rate: expected a number in [0, 1), got 1",
    ]);
    assert.deepEqual(errorsOf("train:\n  epochs: 0\n"), [
      "x.yaml: train.epochs: expected a positive integer, got 0",
    ]);
    assert.deepEqual(errorsOf("train:\n  batch_size: 2.5\n"), [
      "x.yaml: train.batch_size: expected a positive integer, got 2.5",
    ]);
    assert.deepEqual(errorsOf("data:\n  std: [0.2, -1, 0.3]\n"), [
      "x.yaml: data.std[1]: expected a positive number, got -1",
    ]);
    assert.deepEqual(errorsOf("data:\n  aug:\n    scale: [0.08]\n"), [
      "x.yaml: data.aug.scale: expected a list of 2 values, each a number in [0, 1], got [0.08]",
    ]);
  });

  test("enum value suggests the closest choice", () => {
    assert.deepEqual(errorsOf("model:\n  global_pool: tokn\n"), [
      'x.yaml: model.global_pool: expected token or avg, got "tokn" (did you mean "token"?)',
    ]);
    assert.deepEqual(errorsOf("model:\n  in_chans: 2\n"), ["x.yaml: model.in_chans: expected 1 or 3, got 2"]);
  });

  test("schema-given messages keep the value", () => {
    assert.deepEqual(errorsOf("name: my run\n"), [
      'x.yaml: name: expected a folder name (letters, digits, . _ -), got "my run"',
    ]);
  });

  test("missing required key", () => {
    assert.deepEqual(errorsOf("model: {distilled: true}\ndistill: {type: soft}\n"), [
      "x.yaml: distill.teacher: required key missing: expected a non-empty string",
    ]);
  });

  test("cross-field: embed_dim divisible by num_heads", () => {
    assert.deepEqual(errorsOf("model:\n  embed_dim: 100\n  num_heads: 3\n"), [
      "x.yaml: model.num_heads: embed_dim 100 is not divisible by num_heads 3",
    ]);
  });

  test("cross-field: img_size multiple of patch_size", () => {
    assert.deepEqual(errorsOf("model:\n  img_size: 30\n"), [
      "x.yaml: model.patch_size: img_size 30 is not a multiple of patch_size 16",
    ]);
  });

  test("cross-field: global_pool token needs class_token", () => {
    assert.deepEqual(errorsOf("model:\n  class_token: false\n"), [
      "x.yaml: model.class_token: global_pool: token needs class_token: true (or use global_pool: avg)",
    ]);
  });

  test("cross-field: a distilled model pools tokens and has no pre-logits (what the model would reject)", () => {
    assert.deepEqual(errorsOf("model:\n  distilled: true\n  global_pool: avg\n  representation_size: 8\n"), [
      "x.yaml: model.global_pool: a distilled model pools its cls and dist tokens; use global_pool: token",
      "x.yaml: model.representation_size: a distilled model has no pre-logits layer; set it to null",
    ]);
  });

  test("cross-field: distillation needs a distilled model", () => {
    assert.deepEqual(errorsOf("distill:\n  teacher: runs/teacher\n"), [
      "x.yaml: distill.type: distill.type hard needs model.distilled: true (the student's distillation head)",
    ]);
  });

  test("cross-field: mean/std length must match in_chans", () => {
    assert.deepEqual(errorsOf("model:\n  in_chans: 1\ndata:\n  std: [0.5]\n"), [
      "x.yaml: data.mean: has 3 values but model.in_chans is 1",
    ]);
  });

  test("several problems give one line each", () => {
    const lines = errorsOf("model:\n  depth: 0\n  dpth: 3\ntrain:\n  optimizer: {lr: fast}\n");
    assert.deepEqual(lines, [
      "x.yaml: model.depth: expected a positive integer, got 0",
      'x.yaml: model.dpth: unknown key (did you mean "depth"?)',
      'x.yaml: train.optimizer.lr: expected a positive number, got "fast"',
    ]);
  });
});

describe("extends", () => {
  test("merges parents first, child wins, lists replace, null resets", () => {
    write(
      "ext/grand.yaml",
      "train:\n  epochs: 1\n  batch_size: 8\n  ema: {decay: 0.99}\ndata:\n  std: [1, 1, 1]\n",
    );
    write("ext/configs/parent.yaml", "extends: ../grand.yaml\ntrain:\n  epochs: 2\n  seed: 7\n");
    write(
      "ext/configs/child.yaml",
      "extends: parent.yaml\ntrain:\n  epochs: 3\n  ema: null\ndata:\n  std: [0.5, 0.5, 0.5]\n",
    );
    const cfg = loadConfig("ext/configs/child.yaml");
    assert.equal(cfg.train.epochs, 3);
    assert.equal(cfg.train.seed, 7);
    assert.equal(cfg.train.batch_size, 8);
    assert.equal(cfg.train.ema, null);
    assert.deepEqual(cfg.data.std, [0.5, 0.5, 0.5]);
  });

  test("an error blames the file that wrote the key", () => {
    write("blame/base.yaml", "train:\n  epochs: -1\n");
    assert.deepEqual(errorsOf("extends: base.yaml\nmodel:\n  depth: 2\n", [], "blame/child.yaml"), [
      "blame/base.yaml: train.epochs: expected a positive integer, got -1",
    ]);
  });

  test("bad extends path", () => {
    assert.deepEqual(errorsOf("extends: ./missing.yaml\n", [], "sub/x.yaml"), [
      "sub/x.yaml: extends: no such file ./missing.yaml (looked for sub/missing.yaml)",
    ]);
    assert.deepEqual(errorsOf("extends: [a.yaml]\n"), [
      "x.yaml: extends: expected a path to a YAML file, got [a.yaml]",
    ]);
  });

  test("extends cycle", () => {
    write("cyc/a.yaml", "extends: b.yaml\n");
    write("cyc/b.yaml", "extends: a.yaml\n");
    assert.deepEqual(
      errorLines(() => loadConfig("cyc/a.yaml")),
      ["cyc/b.yaml: extends: cycle cyc/a.yaml -> cyc/b.yaml -> cyc/a.yaml"],
    );
    assert.deepEqual(errorsOf("extends: self.yaml\n", [], "self.yaml"), [
      "self.yaml: extends: cycle self.yaml -> self.yaml",
    ]);
  });

  test("a syntax error in a parent names the parent", () => {
    write("synt/base.yaml", "train: {epochs: 3\n");
    assert.match(errorsOf("extends: base.yaml\n", [], "synt/child.yaml")[0], /^synt\/base\.yaml:2:1: /);
  });
});

describe("presets", () => {
  test("a preset fills model and preprocessing; the user's keys win", () => {
    const cfg = loadConfig(
      write("p1.yaml", "model:\n  preset: vit_small_patch16_224\n  depth: 6\ndata:\n  crop_pct: 1.0\n"),
    );
    assert.equal(cfg.model.embed_dim, 384);
    assert.equal(cfg.model.num_heads, 6);
    assert.equal(cfg.model.depth, 6);
    // vit_* presets use inception normalisation.
    assert.deepEqual(cfg.data.mean, [0.5, 0.5, 0.5]);
    assert.deepEqual(cfg.data.std, [0.5, 0.5, 0.5]);
    assert.equal(cfg.data.crop_pct, 1.0);
    assert.equal(cfg.model.preset, "vit_small_patch16_224");
  });

  test("`model: NAME` is short for model.preset", () => {
    const cfg = loadConfig(write("p2.yaml", "model: deit_tiny_distilled_patch16_224\n"));
    assert.equal(cfg.model.distilled, true);
    assert.equal(cfg.model.embed_dim, 192);
    assert.deepEqual(cfg.data.mean, [0.485, 0.456, 0.406]);
    assert.equal(cfg.data.crop_pct, 0.875);
  });

  test("a greyscale preset brings one-channel normalisation", () => {
    const cfg = loadConfig(write("p3.yaml", "model: vit_micro_patch4_28_gray\n"));
    assert.equal(cfg.model.in_chans, 1);
    assert.deepEqual(cfg.data.mean, [0.5]);
    assert.equal(cfg.data.interpolation, "bilinear");
  });

  test("unknown preset suggests the closest name", () => {
    assert.deepEqual(errorsOf("model:\n  preset: vit_tiny_patch16\n"), [
      'x.yaml: model.preset: unknown preset "vit_tiny_patch16" (did you mean "vit_tiny_patch16_224"?)',
    ]);
    assert.deepEqual(errorsOf("model: resnet50\n"), [
      'x.yaml: model.preset: unknown preset "resnet50" (`vit models` lists them)',
    ]);
  });

  test("a preset can come from --set", () => {
    const cfg = loadConfig(write("p4.yaml", "train: {epochs: 2}\n"), {
      set: ["model.preset=vit_base_patch16_224"],
    });
    assert.equal(cfg.model.embed_dim, 768);
    assert.deepEqual(
      errorLines(() => loadConfig("p4.yaml", { set: ["model=vit_bse_patch16_224"] })),
      [
        '--set model=vit_bse_patch16_224: model.preset: unknown preset "vit_bse_patch16_224" (did you mean "vit_base_patch16_224"?)',
      ],
    );
  });
});

describe("--set", () => {
  const base = () => write("s.yaml", "train:\n  epochs: 4\n");

  test("values are coerced as YAML", () => {
    const cfg = loadConfig(base(), {
      set: [
        "train.epochs=7",
        "train.optimizer.lr=1e-3",
        "train.optimizer.eps=5.0e-9",
        "model.qkv_bias=false",
        "model.num_classes=null",
        "data.mean=[0.5, 0.5, 0.5]",
        "data.std=[0.25,0.25,0.25]",
        "train.ema={decay: 0.999}",
        "data.train=path/to=train",
        "data.val=~",
      ],
    });
    assert.equal(cfg.train.epochs, 7);
    assert.equal(cfg.train.optimizer.lr, 0.001);
    assert.equal(cfg.train.optimizer.eps, 5e-9);
    assert.equal(cfg.model.qkv_bias, false);
    assert.equal(cfg.model.num_classes, null);
    assert.deepEqual(cfg.data.mean, [0.5, 0.5, 0.5]);
    assert.deepEqual(cfg.data.std, [0.25, 0.25, 0.25]);
    assert.deepEqual(cfg.train.ema, { decay: 0.999 });
    assert.equal(cfg.data.train, "path/to=train");
    assert.equal(cfg.data.val, null);
  });

  test("later --set wins over earlier ones and over the file", () => {
    const cfg = loadConfig(base(), { set: ["train.epochs=5", "train.epochs=6"] });
    assert.equal(cfg.train.epochs, 6);
  });

  test("bad --set value names the override", () => {
    assert.deepEqual(
      errorLines(() => loadConfig(base(), { set: ["train.optimizer.lr=fast"] })),
      ['--set train.optimizer.lr=fast: train.optimizer.lr: expected a positive number, got "fast"'],
    );
  });

  test("unknown --set path suggests the closest key", () => {
    assert.deepEqual(
      errorLines(() => loadConfig(base(), { set: ["train.optimizer.learning_rate=0.1", "modle.depth=3"] })),
      [
        "--set train.optimizer.learning_rate=0.1: train.optimizer.learning_rate: unknown key (known keys: name, lr, weight_decay, betas, eps, momentum, nesterov)",
        '--set modle.depth=3: modle: unknown key (did you mean "model"?)',
      ],
    );
  });

  test("malformed --set", () => {
    assert.deepEqual(
      errorLines(() => loadConfig(base(), { set: ["train.epochs"] })),
      ["--set train.epochs: expected key.path=value, e.g. --set train.epochs=5"],
    );
    assert.deepEqual(
      errorLines(() => loadConfig(base(), { set: ["train..epochs=3"] })),
      ['--set train..epochs=3: "train..epochs" is not a key path like train.optimizer.lr'],
    );
    assert.deepEqual(
      errorLines(() => loadConfig(base(), { set: ["data.mean=[1, 2"] })),
      ["--set data.mean=[1, 2: cannot read the value: Flow sequence must end with a ]"],
    );
    assert.deepEqual(
      errorLines(() => loadConfig(base(), { set: ["extends=other.yaml"] })),
      ["--set extends=other.yaml: extends can only be given in a config file"],
    );
  });
});

describe("resolved config", () => {
  test("every default is present and printing round-trips", () => {
    const cfg = loadConfig(write("empty.yaml", ""));
    assert.deepEqual(cfg, ConfigSchema.parse({}));
    const text = stringifyConfig(cfg);
    assert.match(text, /^ {4}lr: 5\.0e-4$/m);
    assert.match(text, /^ {2}mean: \[0\.485, 0\.456, 0\.406\]$/m);
    assert.match(text, /^ {4}warmup_lr: 1\.0e-6$/m);
    assert.deepEqual(loadConfig(write("printed.yaml", text)), cfg);
    // The printed text is plain YAML any reader gets the same numbers from.
    assert.equal((YAML.parse(text) as Config).train.optimizer.eps, 1e-8);
  });

  test("a preset config round-trips through print", () => {
    const cfg = loadConfig(write("rt.yaml", "model: deit_small_patch16_224\ntrain: {ema: {decay: 0.999}}\n"));
    assert.deepEqual(resolveConfig(YAML.parse(stringifyConfig(cfg)), { source: "stored" }), cfg);
  });

  test("resolveConfig validates an in-memory object and names its source", () => {
    assert.equal(resolveConfig({ train: { epochs: 2 } }, { source: "ckpt" }).train.epochs, 2);
    assert.deepEqual(
      errorLines(() => resolveConfig({ train: { epochs: "two" } }, { source: "runs/a/config.yaml" })),
      ['runs/a/config.yaml: train.epochs: expected a positive integer, got "two"'],
    );
    assert.equal(resolveConfig(null, { source: "x", set: ["train.seed=3"] }).train.seed, 3);
  });
});

test("docs/config.md's reference is every key with its true default", () => {
  const doc = readFileSync(fileURLToPath(new URL("../docs/config.md", import.meta.url)), "utf8");
  const block = doc.split("## Reference")[1].match(/```yaml\n([\s\S]*?)```/);
  assert.ok(block, "docs/config.md has a ```yaml reference block under ## Reference");
  assert.deepEqual(YAML.parse(block[1]), ConfigSchema.parse({}));
});

describe("did you mean", () => {
  test("edit distance counts a swap as one edit", () => {
    assert.equal(editDistance("modle", "model"), 1);
    assert.equal(editDistance("", "abc"), 3);
    assert.equal(editDistance("kitten", "sitting"), 3);
  });

  test("suggests only plausible typos", () => {
    assert.equal(didYouMean("epoch", ["epochs", "seed"]), "epochs");
    assert.equal(didYouMean("Depth", ["depth", "dim"]), "depth");
    assert.equal(didYouMean("xyz", ["epochs", "seed"]), undefined);
  });
});
