/** Options several sub-commands share, so they read and document the same everywhere. */
import { Option } from "commander";
import { backendNames } from "../src/config/schema.js";

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
