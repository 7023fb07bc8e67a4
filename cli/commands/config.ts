/** `vit config print|check FILE`: the fully resolved config, or just whether it is valid. */
import type { Command } from "commander";
import { loadConfig, stringifyConfig } from "../../src/config/index.js";
import { checkTrainingMemory, memoryLimit } from "../../src/engines/memory.js";
import { setOption } from "../options.js";

export function register(program: Command): void {
  const config = program.command("config").description("print or check a config file").helpCommand(false);
  config
    .command("print")
    .description(
      "print the resolved config (extends merged, preset, --set and every default applied) as YAML",
    )
    .argument("<file>", "config YAML file")
    .addOption(setOption())
    .action((file: string, opts: { set?: string[] }) => {
      process.stdout.write(stringifyConfig(loadConfig(file, { set: opts.set })));
    });
  config
    .command("check")
    .description(
      "validate a config file and its memory estimate: exit 0 if it is valid, 2 with one line per problem if not",
    )
    .argument("<file>", "config YAML file")
    .addOption(setOption())
    .action((file: string, opts: { set?: string[] }) => {
      const cfg = loadConfig(file, { set: opts.set });
      const memory = checkTrainingMemory(cfg, file, {
        numClasses: cfg.model.num_classes ?? 0,
        limit: memoryLimit(cfg.runtime.backend),
      });
      process.stderr.write(`${file}: OK (${memory})\n`);
    });
}
