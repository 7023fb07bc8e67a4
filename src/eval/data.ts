/**
 * The images `vit eval` scores: the run's own validation split by default (the same files, the
 * same seeded hold-out, the eval transform), or `--data DIR|CSV` mapped onto the model's classes.
 */
import type { Config } from "../config/index.js";
import type { Dataset } from "../data/dataset.js";
import { loadDatasets, openDataset } from "../data/sources.js";
import { DataError, UsageError } from "../errors.js";

function listNames(names: readonly string[]): string {
  const shown = names.slice(0, 10).join(", ");
  return names.length > 10 ? `${shown}, ... (${names.length} in all)` : shown;
}

export interface EvalData {
  dataset: Dataset;
  /** Model classes the data has no images of (a subset evaluation); the caller may say so. */
  missing: string[];
}

/**
 * `--data`: its class names must all be model classes (an unknown one cannot be scored); a
 * model class without images only leaves its row of the confusion matrix empty.
 */
export function openEvalData(source: string, classes: readonly string[]): EvalData {
  const found = openDataset(source).classes;
  const known = new Set(classes);
  const present = new Set(found);
  const unknown = found.filter((c) => !known.has(c));
  const missing = classes.filter((c) => !present.has(c));
  if (unknown.length > 0) {
    throw new DataError(
      `${source}: class names differ from the model's: unknown ${listNames(unknown)}` +
        (missing.length > 0 ? `; missing ${listNames(missing)}` : ""),
    );
  }
  return { dataset: openDataset(source, { classes }), missing };
}

/** The validation split the run trained with. */
export async function runValidationData(config: Config, classes: readonly string[]): Promise<EvalData> {
  const data = await loadDatasets(config.data, { seed: config.train.seed, imgSize: config.model.img_size });
  const same = data.classes.length === classes.length && data.classes.every((c, i) => c === classes[i]);
  if (!same) {
    throw new DataError(
      `${config.data.train}: its classes (${listNames(data.classes)}) are not the checkpoint's (${listNames(classes)}); pass --data`,
    );
  }
  if (data.val.samples.length === 0) {
    throw new UsageError(
      `${config.data.train}: the run has no validation images (data.val is null and data.val_split is 0): pass --data DIR|CSV`,
    );
  }
  return { dataset: data.val, missing: [] };
}
