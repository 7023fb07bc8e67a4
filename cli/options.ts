/** Options several sub-commands share, so they read and document the same everywhere. */
import { InvalidArgumentError, Option } from "commander";
import { type BackendName, backendNames, deviceNames } from "../src/config/schema.js";
import type { EngineChoice, SelectOptions } from "../src/engines/select.js";

/** `--set key.path=value`, repeatable; values are YAML scalars or flow lists, validated like the file. */
export function setOption(): Option {
  return new Option(
    "--set <key=value>",
    "override a config key, e.g. --set train.epochs=5 --set data.mean=[0.5,0.5,0.5] (repeatable)",
  ).argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
}

/** `--backend`; without a default the config's runtime.backend applies. */
export function backendOption(defaultValue?: (typeof backendNames)[number]): Option {
  const option = new Option(
    "--backend <name>",
    "engine: onnxruntime, or a tfjs backend (tensorflow, wasm, cpu); auto takes the fastest here",
  ).choices(backendNames);
  return defaultValue ? option.default(defaultValue) : option;
}

/** commander parser for counts (`--topk`, `--threads`, ...). */
export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

/** `--threads N`; `fallback` says what applies without it. */
export function threadsOption(fallback = "runtime.threads"): Option {
  return new Option("--threads <n>", `wasm and onnxruntime threads (default: ${fallback})`).argParser(
    positiveInt,
  );
}

/** `--device`: onnxruntime's device (src/engines/onnxruntime/device.ts); without it the config's runtime.device. */
export function deviceOption(): Option {
  return new Option(
    "--device <name>",
    "onnxruntime's device: auto (WebGPU on a hardware GPU, else cpu), webgpu, cuda (untested here)",
  ).choices(deviceNames);
}

/** Starts the engine; a note (wasm fell back to one thread) goes to stderr. */
export async function startEngine(name: BackendName, opts: SelectOptions = {}): Promise<EngineChoice> {
  const { selectEngine } = await import("../src/engines/select.js");
  const choice = await selectEngine(name, opts);
  if (choice.engine === "tfjs" && choice.note) process.stderr.write(`note: ${choice.note}\n`);
  return choice;
}
