/**
 * `vit train --config F [--set k=v ...] [--resume DIR] [--backend B] [--threads N] [--device D]`: trains
 * into runs/<name>/ and prints that folder on stdout. A resumed run stays on the engine it was
 * trained on unless --backend says otherwise. The first Ctrl-C (or SIGTERM) finishes the step, saves and exits
 * 130 with the resume command; a second Ctrl-C quits at once.
 */
import type { Command } from "commander";
import type { BackendName, DeviceName } from "../../src/config/schema.js";
import { UsageError } from "../../src/errors.js";
import { backendOption, deviceOption, setOption, startEngine, threadsOption } from "../options.js";

interface TrainFlags {
  config?: string;
  set?: string[];
  resume?: string;
  backend?: BackendName;
  threads?: number;
  device?: DeviceName;
}

export function register(program: Command): void {
  program
    .command("train")
    .description("train a model into runs/<name>/ (checkpoints, metrics.jsonl, curves.png)")
    .option("--config <file>", "YAML config (see configs/)")
    .addOption(setOption())
    .option(
      "--resume <dir>",
      "continue the run in this folder from its last checkpoint, with its own config and engine",
    )
    .addOption(backendOption())
    .addOption(threadsOption())
    .addOption(deviceOption())
    .action(async (flags: TrainFlags) => {
      if (!flags.config === !flags.resume) {
        throw new UsageError(
          flags.config
            ? "--resume uses the run's own config: drop --config (change keys with --set)"
            : "train needs --config FILE (or --resume DIR)",
        );
      }
      const [
        { loadConfig },
        { describeEngine, resumeSelection },
        { readCheckpointEngine },
        { loadRunConfig, train },
        { runPath },
      ] = await Promise.all([
        import("../../src/config/index.js"),
        import("../../src/engines/select.js"),
        import("../../src/weights/checkpoint.js"),
        import("../../src/train/loop.js"),
        import("../../src/weights/run_dir.js"),
      ]);
      const config = flags.resume
        ? loadRunConfig(flags.resume, flags.set)
        : loadConfig(flags.config!, { set: flags.set });
      const selection: { name: BackendName; tfjsOnly?: string } =
        flags.backend !== undefined
          ? { name: flags.backend }
          : flags.resume
            ? resumeSelection(readCheckpointEngine(runPath(flags.resume, "last")), config.runtime.backend)
            : { name: config.runtime.backend };
      const engine = await startEngine(selection.name, {
        threads: flags.threads ?? config.runtime.threads,
        device: flags.device ?? config.runtime.device,
        tfjsOnly: selection.tfjsOnly,
      });
      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals) => {
        if (stop.signal.aborted) process.exit(130);
        stop.abort();
        const newline = process.stderr.isTTY ? "\n" : ""; // off the progress bar's line
        process.stderr.write(
          `${newline}${signal}: stopping after this step and saving (Ctrl-C again to quit without saving)\n`,
        );
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      try {
        const result = await train({
          config,
          resumeDir: flags.resume,
          backend: describeEngine(engine),
          // onnxruntime runs the steps; tfjs's cpu backend holds the weights on the host.
          engine: engine.engine === "onnxruntime" ? engine : { engine: "tfjs" },
          signal: stop.signal,
        });
        process.stdout.write(`${result.runDir}\n`);
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
}
