/**
 * A run folder holding a random-weight checkpoint of any config, for what needs a servable model
 * but no trained one: `npm run bench:serve` and the page screenshot in docs/.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Config } from "../src/config/index.js";
import { createModel } from "../src/model/vision_transformer.js";
import type { StateDict } from "../src/tensor.js";
import { writeWeights } from "../src/weights/checkpoint.js";

/**
 * Writes `dir/checkpoints/best.safetensors` and returns `dir`. `headBias` (one value per class)
 * replaces the classifier's bias, so a random model can still be made to prefer some classes.
 */
export function writeRandomRun(
  dir: string,
  config: Config,
  classes: string[],
  opts: { seed?: number; headBias?: number[] } = {},
): string {
  const model = createModel({ ...config.model, num_classes: classes.length }, { seed: opts.seed ?? 0 });
  const weights: StateDict = model.stateDict();
  model.dispose();
  if (opts.headBias)
    weights.set("head.bias", { shape: [classes.length], data: Float32Array.from(opts.headBias) });
  fs.mkdirSync(path.join(dir, "checkpoints"), { recursive: true });
  writeWeights(path.join(dir, "checkpoints", "best.safetensors"), weights, {
    config,
    classes,
    epoch: 0,
    step: 0,
  });
  return dir;
}
