/**
 * `vit timm-command --config F [--set k=v ...] [--nproc-per-node N] [--nnodes M]`: prints on stdout
 * the one-line `torchrun ... train.py ...` that trains the same run with timm 1.0.x, and on stderr
 * every config key with its timm argument or why it has none (docs/scale-out.md).
 */
import { type Command, Option } from "commander";
import { positiveInt, setOption } from "../options.js";

interface TimmCommandFlags {
  config: string;
  set?: string[];
  nprocPerNode: number;
  nnodes: number;
  rdzvEndpoint?: string;
  device?: "cpu";
  dataDir?: string;
  teacherDir?: string;
  trainPy?: string;
}

export function register(program: Command): void {
  program
    .command("timm-command")
    .description(
      "print the torchrun command that trains this config with timm's train.py (many GPUs and nodes)",
    )
    .requiredOption("--config <file>", "YAML config (see configs/)")
    .addOption(setOption())
    .option("--nproc-per-node <n>", "GPU processes per node", positiveInt, 1)
    .option("--nnodes <m>", "nodes", positiveInt, 1)
    .option("--rdzv-endpoint <host:port>", "with --nnodes > 1: node 0's address, the same on every node")
    .addOption(
      new Option("--device <device>", "cpu: the one-process check on a machine without GPUs").choices([
        "cpu",
      ]),
    )
    .option("--data-dir <dir>", "where `vit data export` writes the ImageFolder (default: timm-data/<name>)")
    .option(
      "--teacher-dir <dir>",
      "the teacher as `vit export --format timm` wrote it (default: timm-teacher/<name>)",
    )
    .option("--train-py <file>", "timm's train.py (default: train.py, run from timm's checkout)")
    .action(async (flags: TimmCommandFlags) => {
      const [{ loadConfig }, { formatTable, timmCommand }] = await Promise.all([
        import("../../src/config/index.js"),
        import("../../src/scaleout/command.js"),
      ]);
      const config = loadConfig(flags.config, { set: flags.set });
      const cmd = timmCommand(config, {
        configFile: flags.config,
        set: flags.set,
        nprocPerNode: flags.nprocPerNode,
        nnodes: flags.nnodes,
        rdzvEndpoint: flags.rdzvEndpoint,
        cpu: flags.device === "cpu",
        dataDir: flags.dataDir,
        teacherDir: flags.teacherDir,
        trainPy: flags.trainPy,
      });
      process.stderr.write(`${formatTable(cmd.rows)}\n`);
      process.stdout.write(`${cmd.line}\n`);
    });
}
