/** Options several sub-commands share, so they read and document the same everywhere. */
import { InvalidArgumentError, Option } from "commander";
import { type BackendName, backendNames } from "../src/config/schema.js";
import type { BackendChoice } from "../src/engines/tfjs/select.js";

/** `--set key.path=value`, repeatable; values are YAML scalars or flow lists, validated like the file. */
export function setOption(): Option {
  return new Option(
    "--set <key=value>",
    "override a config key, e.g. --set train.epochs=5 --set data.mean=[0.5,0.5,0.5] (repeatable)",
  ).argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
}

/** `--backend`; without a default the config's runtime.backend applies. */
export function backendOption(defaultValue?: (typeof backendNames)[number]): Option {
  const option = new Option("--backend <name>", "tfjs backend").choices(backendNames);
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
  return new Option("--threads <n>", `wasm backend threads (default: ${fallback})`).argParser(positiveInt);
}

/** Starts the tfjs backend; a note (wasm fell back to one thread) goes to stderr. */
export async function startBackend(
  name: BackendName,
  threads: number | null | undefined,
): Promise<BackendChoice> {
  const { initBackend } = await import("../src/engines/tfjs/select.js");
  const choice = await initBackend(name, { threads });
  if (choice.note) process.stderr.write(`note: ${choice.note}\n`);
  return choice;
}
