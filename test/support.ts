/** What many test files share: where things are, the CLI runner, and closeness within a tolerance. */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import { type Config, ConfigSchema } from "../src/config/schema.js";

export const ROOT = path.resolve(import.meta.dirname, "..");
/** Golden data made by timm itself (README there). */
export const FIXTURES = path.join(import.meta.dirname, "fixtures", "timm-parity");
const CLI = path.join(ROOT, "cli", "index.ts");
/** Named by its full path: the children may run in a temp folder. */
const TSX = import.meta.resolve("tsx");

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Called with all of stderr so far whenever more arrives (to signal the child mid-run). */
  onStderr?: (text: string, child: ChildProcess) => void;
}

/** Runs the real `vit` from source (no build needed); resolves when the child exits. */
export function runVit(args: string[], { cwd, env, onStderr }: CliOptions): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", TSX, CLI, ...args], {
      cwd,
      env: { ...process.env, ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
      onStderr?.(stderr, child);
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Fails on the first element with |got - want| > tol + tol·|want| (the fixtures' tolerance
 * form); returns the largest absolute difference seen.
 */
export function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  what: string,
): number {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, want ${want.length}`);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= tol + tol * Math.abs(want[i]))) {
      assert.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]} (|diff| ${err.toExponential(2)})`);
    }
    worst = Math.max(worst, err);
  }
  return worst;
}

/**
 * Why WebGPU tests cannot run here, or undefined when they can: they need a WebGPU adapter, the
 * software one included (Mesa's llvmpipe through Vulkan: .ci/run installs mesa-vulkan-drivers).
 */
export async function webgpuSkip(): Promise<string | undefined> {
  const { findWebgpuAdapter } = await import("../src/engines/onnxruntime/device.js");
  const found = await findWebgpuAdapter();
  return typeof found === "string" ? `no Vulkan/WebGPU device on this machine: ${found}` : undefined;
}

/**
 * A tiny synthetic run writing into `runsDir`: 80 train / 20 val images of 16 px; 10 micro-batches
 * of 8 per epoch, 2 accumulated: 5 steps. Dropout, drop path, mixup, cutmix, erasing, clipping and
 * EMA are all on, so resume and engine tests see every random draw.
 */
export function tinyTrainConfig(
  name: string,
  runsDir: string,
  epochs: number,
  over: Record<string, unknown> = {},
): Config {
  return ConfigSchema.parse({
    name,
    model: {
      img_size: 16,
      patch_size: 4,
      embed_dim: 16,
      depth: 2,
      num_heads: 2,
      mlp_ratio: 2,
      drop_rate: 0.1,
      drop_path_rate: 0.2,
    },
    data: {
      train: "synthetic",
      synthetic_per_class: 10,
      val_split: 0.2,
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
      workers: 1,
      aug: { mixup: 0.8, cutmix: 1.0, random_erasing: 0.25 },
    },
    train: {
      epochs,
      batch_size: 8,
      accum_steps: 2,
      clip_grad_norm: 1.0,
      ema: { decay: 0.9 },
      log_interval: 2,
      optimizer: { lr: 2e-3 },
    },
    output: { dir: runsDir },
    ...over,
  });
}
