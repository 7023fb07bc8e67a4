/**
 * `vit train` as a user runs it, in child processes: a tiny model on an ImageFolder the test
 * draws, the run folder it leaves, Ctrl-C (SIGINT) then --resume, and the usage errors.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import YAML from "yaml";
import { readSafetensors } from "../src/io/safetensors.js";
import { type CliOptions, runVit } from "./support.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "vit-train-cli-"));
const vit = (args: string[], onStderr?: CliOptions["onStderr"]) =>
  runVit(args, { cwd: root, env: { VIT_CACHE_DIR: path.join(root, "cache") }, onStderr });

/** Three classes of noisy solid colours: easy enough that one epoch of a tiny ViT beats chance. */
async function colourFolder(dir: string, perClass: number): Promise<void> {
  const colours: Record<string, [number, number, number]> = {
    red: [200, 40, 40],
    green: [40, 180, 60],
    blue: [40, 60, 200],
  };
  let seed = 1;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (const [name, rgb] of Object.entries(colours)) {
    fs.mkdirSync(path.join(dir, name), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const px = Buffer.alloc(20 * 20 * 3);
      for (let p = 0; p < px.length; p++)
        px[p] = Math.max(0, Math.min(255, rgb[p % 3] + (rand() - 0.5) * 120));
      await sharp(px, { raw: { width: 20, height: 20, channels: 3 } })
        .png()
        .toFile(path.join(dir, name, `${i}.png`));
    }
  }
}

function writeConfig(name: string, over: string): string {
  const file = path.join(root, `${name}.yaml`);
  fs.writeFileSync(
    file,
    `name: ${name}
model: {img_size: 16, patch_size: 4, embed_dim: 16, depth: 1, num_heads: 2, mlp_ratio: 2, drop_path_rate: 0.0}
data: {train: colours, val_split: 0.25, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], workers: 1}
${over}
`,
  );
  return file;
}

const ready = colourFolder(path.join(root, "colours"), 24);

test("vit train: 2 epochs of a tiny model leave a complete run folder and beat chance", async () => {
  await ready;
  const config = writeConfig(
    "e2e",
    "train: {epochs: 2, batch_size: 6, log_interval: 4, optimizer: {lr: 3.0e-3}, schedule: {warmup_epochs: 0}}",
  );
  const r = await vit(["train", "--config", config, "--backend", "cpu"]);
  assert.equal(r.code, 0, r.stderr);
  const dir = path.join(root, r.stdout.trim());
  assert.equal(r.stdout.trim(), path.join("runs", "e2e"));
  assert.match(
    r.stderr,
    /parameters +[\d,]+: weight decay on [\d,]+ \(\d+ tensors\), none on [\d,]+ \(\d+ tensors\)/,
  );
  assert.match(r.stderr, /data +colours: 54 train \/ 18 val images/);
  for (const f of [
    "config.yaml",
    "metrics.jsonl",
    "curves.png",
    "checkpoints/last.safetensors",
    "checkpoints/last.state.safetensors",
    "checkpoints/best.safetensors",
  ]) {
    assert.ok(fs.existsSync(path.join(dir, f)), `${f} is missing`);
  }
  assert.equal(YAML.parse(fs.readFileSync(path.join(dir, "config.yaml"), "utf8")).train.epochs, 2);
  const records = fs
    .readFileSync(path.join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const epochs = records.filter((x) => x.kind === "epoch");
  assert.deepEqual(
    epochs.map((e) => e.epoch),
    [0, 1],
  );
  assert.ok(records.some((x) => x.kind === "step" && typeof x["train/loss"] === "number" && x.lr > 0));
  const top1 = epochs[1]["val/top1"];
  assert.ok(top1 > 1 / 3 + 0.15, `val top-1 ${top1} does not beat chance (1/3)`);
  const last = readSafetensors(path.join(dir, "checkpoints/last.safetensors"));
  assert.deepEqual(JSON.parse(last.metadata.classes), ["blue", "green", "red"]);
  assert.equal(last.metadata.engine, "tfjs");
  assert.equal(JSON.parse(last.metadata.config).model.embed_dim, 16);
  assert.deepEqual(last.tensors.get("head.weight")!.shape, [3, 16]);
  const png = await sharp(path.join(dir, "curves.png")).metadata();
  assert.equal(png.format, "png");
});

test("vit train: SIGINT finishes the step, saves, exits 130 with the resume command; --resume finishes", async () => {
  await ready;
  const config = writeConfig("sigint", "train: {epochs: 3, batch_size: 6, log_interval: 1}");
  let sent = false;
  const r = await vit(["train", "--config", config, "--backend", "cpu"], (stderr, child) => {
    if (!sent && /step 2\/9/.test(stderr)) {
      sent = true;
      child.kill("SIGINT");
    }
  });
  assert.ok(sent, r.stderr);
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /SIGINT: stopping after this step/);
  assert.match(
    r.stderr,
    /interrupted: saved epoch 1 step \d\/9 to .*; continue with: vit train --resume runs[/\\]sigint/,
  );
  const saved = Number(
    readSafetensors(path.join(root, "runs/sigint/checkpoints/last.safetensors")).metadata.step,
  );
  assert.ok(saved >= 2 && saved < 9, `saved at step ${saved}`);

  const resumed = await vit(["train", "--resume", path.join("runs", "sigint"), "--backend", "cpu"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resuming +from epoch 1 step ${saved}/9`));
  const records = fs
    .readFileSync(path.join(root, "runs/sigint/metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    records.filter((x) => x.kind === "step").map((x) => x.step),
    [...Array(27).keys()].map((i) => i + 1),
  );
  assert.deepEqual(
    records.filter((x) => x.kind === "epoch").map((x) => x.epoch),
    [0, 1, 2],
  );
});

test("vit train --resume stays on the run's engine unless --backend says otherwise", async () => {
  await ready;
  const config = writeConfig("engine", "train: {epochs: 1, batch_size: 6, log_interval: 4}");
  const first = await vit(["train", "--config", config, "--backend", "cpu"]);
  assert.equal(first.code, 0, first.stderr);
  const lastFile = path.join(root, "runs", "engine", "checkpoints", "last.safetensors");
  assert.equal(readSafetensors(lastFile).metadata.engine, "tfjs");

  // runtime.backend is auto, which picks onnxruntime here: a tfjs run resumes on a tfjs backend.
  const resumed = await vit(["train", "--resume", path.join("runs", "engine"), "--set", "train.epochs=2"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /^ *backend +(tensorflow|wasm|cpu)\b/m);
  assert.doesNotMatch(resumed.stderr, /onnxruntime/);

  // A run trained on onnxruntime resumes there even when its config now names a tfjs backend.
  const ortConfig = writeConfig("engine-ort", "train: {epochs: 1, batch_size: 6, log_interval: 4}");
  const ort = await vit(["train", "--config", ortConfig, "--backend", "onnxruntime", "--threads", "1"]);
  assert.equal(ort.code, 0, ort.stderr);
  const ortLast = path.join(root, "runs", "engine-ort", "checkpoints", "last.safetensors");
  assert.equal(readSafetensors(ortLast).metadata.engine, "onnxruntime");
  const ortRun = path.join("runs", "engine-ort");
  const ortResumed = await vit([
    "train",
    "--resume",
    ortRun,
    "--set",
    "train.epochs=2",
    "--set",
    "runtime.backend=wasm",
  ]);
  assert.equal(ortResumed.code, 0, ortResumed.stderr);
  assert.match(ortResumed.stderr, /^ *backend +onnxruntime\b/m);
  // --backend overrides the recorded engine.
  const cpu = await vit(["train", "--resume", ortRun, "--set", "train.epochs=3", "--backend", "cpu"]);
  assert.equal(cpu.code, 0, cpu.stderr);
  assert.match(cpu.stderr, /^ *backend +cpu\b/m);
  assert.equal(readSafetensors(ortLast).metadata.engine, "tfjs");
});

test("vit train: usage and config errors exit 2 with one line", async () => {
  const none = await vit(["train"]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /train needs --config FILE/);
  const both = await vit(["train", "--config", "x.yaml", "--resume", "runs/x"]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--resume uses the run's own config/);
  const bad = await vit(["train", "--config", writeConfig("bad", "train: {epoch: 2}")]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /train\.epoch/);
  const missing = await vit(["train", "--resume", "runs/nothing"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /runs\/nothing: no .* to resume from/);
});
