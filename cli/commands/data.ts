/**
 * `vit data export --config F [--set k=v ...] --out DIR [--copy]`: the config's train and val sets
 * as the ImageFolder timm's train.py reads (DIR/train, DIR/val, DIR/class_map.txt); prints DIR.
 */
import type { Command } from "commander";
import { setOption } from "../options.js";

interface DataExportFlags {
  config: string;
  set?: string[];
  out: string;
  copy?: boolean;
}

export function register(program: Command): void {
  const data = program.command("data").description("datasets: export for other trainers").helpCommand(false);
  data
    .command("export")
    .description(
      "write the config's train and val sets as an ImageFolder (train/, val/, class_map.txt) for timm",
    )
    .requiredOption("--config <file>", "YAML config (see configs/)")
    .addOption(setOption())
    .requiredOption("--out <dir>", "a new or empty folder")
    .option("--copy", "copy the image files (default: hard links where the file system allows)")
    .action(async (flags: DataExportFlags) => {
      const [{ loadConfig }, { exportImageFolder }] = await Promise.all([
        import("../../src/config/index.js"),
        import("../../src/scaleout/data_export.js"),
      ]);
      const config = loadConfig(flags.config, { set: flags.set });
      const s = await exportImageFolder(config, flags.out, { copy: flags.copy });
      process.stderr.write(
        `${s.classes.length} classes, ${s.train} train + ${s.val} val images ` +
          `(${s.linked} linked, ${s.copied} copied, ${s.converted} converted to PNG)\n`,
      );
      process.stdout.write(`${s.dir}\n`);
    });
}
