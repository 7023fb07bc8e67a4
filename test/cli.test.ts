import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { handleError } from "../cli/run.js";
import { ConfigError, DataError, InterruptedError, UsageError } from "../src/errors.js";
import { type CliRun, runVit } from "./support.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const _CLI = path.join(ROOT, "cli", "index.ts");
// Resolved here so the child can run from a temp dir that has no node_modules.
const vit = (args: string[], cwd = dir) => runVit(args, { cwd });

let dir: string;
let info: Promise<CliRun>;
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "vit-cli-"));
  writeFileSync(path.join(dir, "ok.yaml"), "model: vit_micro_patch4_32\ntrain:\n  epochs: 3\n");
  writeFileSync(path.join(dir, "bad.yaml"), "train:\n  optimizer:\n    lr: fast\n");
  writeFileSync(path.join(dir, "broken.yaml"), "train: [1, 2\n");
  info = vit(["info"]);
});
after(() => rmSync(dir, { recursive: true, force: true }));

// Each child costs about a CPU-second (tsx start-up), so they run two at a time.
describe("vit (child process)", { concurrency: 2 }, () => {
  test("--help lists the sub-commands", async () => {
    const r = await vit(["--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: vit \[options\] \[command\]/);
    assert.match(r.stdout, /^ {2}config +print or check a config file$/m);
    assert.match(r.stdout, /^ {2}info\|doctor \[options\] +show the engine --backend auto picks/m);
    assert.match(r.stdout, /--verbose/);
  });

  test("--version prints package.json's version", async () => {
    const r = await vit(["--version"]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version);
  });

  test("config check: valid file exits 0 with one line on stderr", async () => {
    const r = await vit(["config", "check", "ok.yaml"]);
    assert.deepEqual(r, { code: 0, stdout: "", stderr: "ok.yaml: OK\n" });
  });

  test("config check: bad value exits 2 with the one-line message, no stack", async () => {
    const r = await vit(["config", "check", "bad.yaml"]);
    assert.deepEqual(r, {
      code: 2,
      stdout: "",
      stderr: 'bad.yaml: train.optimizer.lr: expected a positive number, got "fast"\n',
    });
  });

  test("config check: YAML syntax error exits 2 with file:line:col", async () => {
    const r = await vit(["config", "check", "broken.yaml"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^broken\.yaml:2:1: Flow sequence/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
  });

  test("config check: bad --set exits 2 naming the override", async () => {
    const r = await vit(["config", "check", "ok.yaml", "--set", "model.dpth=3"]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, '--set model.dpth=3: model.dpth: unknown key (did you mean "depth"?)\n');
  });

  test("--verbose adds the stack trace", async () => {
    const r = await vit(["config", "check", "bad.yaml", "--verbose"]);
    assert.equal(r.code, 2);
    const lines = r.stderr.split("\n");
    assert.equal(lines[0], 'bad.yaml: train.optimizer.lr: expected a positive number, got "fast"');
    assert.match(r.stderr, /\n {4}at .*load\.ts/);
  });

  test("config print: resolved YAML with presets and --set applied", async () => {
    const r = await vit([
      "config",
      "print",
      "ok.yaml",
      "--set",
      "train.epochs=9",
      "--set",
      "data.mean=[0.5,0.5,0.5]",
    ]);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, "");
    const cfg = YAML.parse(r.stdout);
    assert.equal(cfg.train.epochs, 9);
    assert.deepEqual(cfg.data.mean, [0.5, 0.5, 0.5]);
    assert.equal(cfg.model.embed_dim, 96);
    assert.equal(cfg.runtime.backend, "auto");
  });

  test("usage errors exit 2", async () => {
    for (const args of [["bogus"], ["config", "check", "ok.yaml", "--nope"], ["info", "--backend", "gpu"]]) {
      const r = await vit(args);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /^error: /, args.join(" "));
      assert.equal(r.stdout, "");
    }
  });

  test("a missing config file exits 2", async () => {
    const r = await vit(["config", "print", "nope.yaml"]);
    assert.deepEqual(r, { code: 2, stdout: "", stderr: "nope.yaml: no such file\n" });
  });

  test("info reports the chosen engine, skipped ones and versions", async () => {
    const r = await info;
    assert.equal(r.code, 0);
    assert.equal(r.stderr, "", "no tfjs banner or warnings");
    const tfjs = JSON.parse(
      readFileSync(path.join(ROOT, "node_modules/@tensorflow/tfjs/package.json"), "utf8"),
    );
    assert.match(r.stdout, new RegExp(`^tfjs {8}${tfjs.version.replaceAll(".", "\\.")}$`, "m"));
    assert.match(r.stdout, new RegExp(`^node {8}${process.version.replaceAll(".", "\\.")} \\(`, "m"));
    assert.match(r.stdout, /^backend {5}(tensorflow|onnxruntime|wasm) .*chosen by --backend auto$/m);
    assert.match(r.stdout, /needs libtensorflow 2\.9\.1: CUDA 11\.2, cuDNN 8\.1/);
    if (/^backend {5}onnxruntime/m.test(r.stdout)) {
      // Here: no tfjs-node-gpu, so onnxruntime comes next, on one intra-op thread per core.
      assert.match(r.stdout, /^engine {6}onnxruntime$/m);
      assert.match(
        r.stdout,
        /^skipped {5}tensorflow: @tensorflow\/tfjs-node-gpu (not installed|failed to load)/m,
      );
      assert.match(
        r.stdout,
        new RegExp(`^onnxruntime \\d+\\.\\d+\\.\\d+, ${os.availableParallelism()} intra-op`, "m"),
      );
      assert.match(r.stdout, /^cuda {8}onnxruntime's CUDA provider is (not )?installed/m);
    }
    if (/^backend {5}wasm/m.test(r.stdout)) {
      assert.match(
        r.stdout,
        /^skipped {5}tensorflow: @tensorflow\/tfjs-node-gpu (not installed|failed to load)/m,
      );
      assert.match(r.stdout, /^wasm {8}SIMD (yes|no), \d+ thread\(s\) \(--threads\)$/m);
    }
  });

  test("doctor --backend tensorflow without the package exits 2 naming it", async (t) => {
    const cpu = await vit(["doctor", "--backend", "cpu"]);
    assert.match(cpu.stdout, /^backend {5}cpu, chosen by --backend cpu$/m);
    assert.match(cpu.stdout, /^engine {6}tfjs$/m);
    if (!/tfjs-node-gpu not installed/.test((await info).stdout)) {
      t.skip("a native tensorflow package is installed here");
      return;
    }
    const r = await vit(["doctor", "--backend", "tensorflow"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^backend tensorflow is not available .*npm install @tensorflow\/tfjs-node-gpu/);
  });
});

describe("handleError", () => {
  function run(err: unknown, verbose = false) {
    let text = "";
    const code = handleError(err, { verbose }, (s) => {
      text += s;
    });
    return { code, text };
  }

  test("maps each error class to its exit code with its message alone", () => {
    assert.deepEqual(run(new ConfigError("x.yaml: a: bad")), { code: 2, text: "x.yaml: a: bad\n" });
    assert.deepEqual(run(new UsageError("no --run")), { code: 2, text: "no --run\n" });
    assert.deepEqual(run(new DataError("cat.jpg: cannot decode")), {
      code: 1,
      text: "cat.jpg: cannot decode\n",
    });
    assert.deepEqual(run(new InterruptedError("stopped; saved runs/a")), {
      code: 130,
      text: "stopped; saved runs/a\n",
    });
  });

  test("an unexpected error exits 1 and points at --verbose", () => {
    assert.deepEqual(run(new TypeError("x is undefined")), {
      code: 1,
      text: "error: x is undefined\n(run with --verbose for the stack trace)\n",
    });
  });

  test("--verbose prints the stack", () => {
    const { code, text } = run(new DataError("bad"), true);
    assert.equal(code, 1);
    assert.match(text, /^bad\nDataError: bad\n {4}at /);
  });
});
