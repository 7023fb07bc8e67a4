#!/usr/bin/env node
/**
 * The `vit` command. This file only wires sub-commands: each lives in cli/commands/<cmd>.ts and
 * exports `register(program: Command): void`, which adds it with `program.command(...)` (shared
 * options in cli/options.ts; the global --verbose via `command.optsWithGlobals()`). Errors thrown
 * from an action reach handleError in cli/run.ts, which maps them to exit codes. A command module
 * imports heavy modules (tfjs, sharp) inside its action so that `vit --help` stays fast.
 *
 * To add a command, add ONE line below, in the order `vit --help` should list it.
 */
import { createProgram, runProgram } from "./run.js";

const program = createProgram();
(await import("./commands/train.js")).register(program);
(await import("./commands/eval.js")).register(program);
(await import("./commands/predict.js")).register(program);
(await import("./commands/attention.js")).register(program);
(await import("./commands/export.js")).register(program);
(await import("./commands/import.js")).register(program);
(await import("./commands/timm_command.js")).register(program);
(await import("./commands/data.js")).register(program);
(await import("./commands/models.js")).register(program);
(await import("./commands/config.js")).register(program);
(await import("./commands/info.js")).register(program);

await runProgram(program, process.argv);
