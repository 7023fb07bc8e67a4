/** `vit models`: every preset with its size and cost, counted from the model it builds. */
import type { Command } from "commander";
import { alignTable } from "../../src/plot/table.js";

export function register(program: Command): void {
  program
    .command("models")
    .description("list the model presets with their parameter counts and GFLOPs")
    .option("--json", "print JSON (one object per preset) instead of a table")
    .action(async (opts: { json?: boolean }) => {
      process.stdout.write(await listModels(opts.json === true));
    });
}

/** The `vit models` output: a table, or JSON with one object per preset. */
export async function listModels(json: boolean): Promise<string> {
  // Loaded here: the model modules import tfjs, which `vit --help` should not wait for.
  const { ModelConfigSchema } = await import("../../src/config/schema.js");
  const { PRESETS } = await import("../../src/config/presets.js");
  const { modelStats } = await import("../../src/model/stats.js");
  const rows = PRESETS.map((preset) => {
    const cfg = ModelConfigSchema.parse(preset.model);
    const { params, gflops } = modelStats(cfg, preset.num_classes);
    return {
      name: preset.name,
      embed_dim: cfg.embed_dim,
      depth: cfg.depth,
      num_heads: cfg.num_heads,
      img_size: cfg.img_size,
      patch_size: cfg.patch_size,
      in_chans: cfg.in_chans,
      num_classes: preset.num_classes,
      distilled: cfg.distilled,
      params,
      gflops,
      description: preset.description,
    };
  });
  if (json) return `${JSON.stringify(rows, null, 2)}\n`;
  const table = [
    ["name", "embed_dim", "depth", "heads", "img", "params", "GFLOPs"],
    ...rows.map((r) => [
      r.name,
      String(r.embed_dim),
      String(r.depth),
      String(r.num_heads),
      `${r.img_size}${r.in_chans === 1 ? " (1ch)" : ""}`,
      r.params.toLocaleString("en-US"),
      r.gflops.toPrecision(3),
    ]),
  ];
  const note =
    "params with the preset's classes; GFLOPs: multiply-accumulates per image, as timm and fvcore count";
  return `${alignTable(table)}\n\n${note}\n`;
}
