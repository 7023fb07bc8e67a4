/**
 * Checks a timm state dict against the architecture a model config implies, before an exporter
 * writes a file another program will load. The expected keys and shapes are the model's own
 * parameter specs (declared, never allocated), so they cannot drift from what training writes.
 */
import { DataError } from "../errors.js";
import type { TensorData } from "../tensor.js";
import { compareStateDict } from "./module.js";
import type { VisionTransformer } from "./vision_transformer.js";

/**
 * Throws one DataError listing every missing, unexpected and wrongly shaped tensor, so a file
 * from another architecture (or with Hugging Face names) is named as such, not failed on late.
 */
export function checkTimmStateDict(
  stateDict: ReadonlyMap<string, TensorData>,
  model: VisionTransformer,
  source: string,
): void {
  const expected = model.paramShapes();
  const { missing, unexpected, wrongShape, wrongSize } = compareStateDict(expected, stateDict);
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing ${list(missing)}`);
  if (unexpected.length > 0) problems.push(`unexpected ${list(unexpected)}`);
  for (const key of wrongShape) {
    problems.push(
      `"${key}" has shape [${stateDict.get(key)!.shape}] but the config needs [${expected.get(key)}]`,
    );
  }
  for (const key of wrongSize) {
    problems.push(`"${key}" has ${stateDict.get(key)!.data.length} values for shape [${expected.get(key)}]`);
  }
  if (problems.length > 0) {
    throw new DataError(`${source}: not the state dict of ${describe(model)}: ${problems.join("; ")}`);
  }
}

function describe({ cfg }: VisionTransformer): string {
  const kind = cfg.distilled ? "a distilled DeiT" : "a ViT";
  return `${kind} (img ${cfg.img_size}, patch ${cfg.patch_size}, embed_dim ${cfg.embed_dim}, depth ${cfg.depth}, ${cfg.num_classes} classes)`;
}

function list(keys: string[]): string {
  const shown = keys.slice(0, 4).map((k) => `"${k}"`);
  return keys.length > 4 ? `${shown.join(", ")} and ${keys.length - 4} more` : shown.join(", ");
}
