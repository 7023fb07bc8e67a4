/**
 * What every source turns into: a list of (file, label) pairs and the class names the labels index.
 * The class names travel with the dataset into the loader, the trainer and the checkpoints.
 */
import { printable } from "../errors.js";
import type { ImageWalk } from "./image_files.js";

export interface Sample {
  path: string;
  label: number;
}

export interface Dataset {
  /** The folder or CSV the samples came from (or a description of a split of it). */
  source: string;
  /** Label i is classes[i]. */
  classes: readonly string[];
  samples: readonly Sample[];
}

export interface OpenOptions {
  /**
   * The label space to use, e.g. the training classes when opening a validation set or the
   * checkpoint's classes in `vit eval --data`. Every label found must be one of them.
   */
  classes?: readonly string[];
  /** The folder walk shared with another dataset (train and val), so no file is listed in both. */
  walk?: ImageWalk;
}

/** Index of each name in `classes`, for turning folder names or CSV labels into labels. */
export function classIndex(classes: readonly string[]): Map<string, number> {
  return new Map(classes.map((c, i) => [c, i]));
}

/** "a, b, c, ... (12 classes)": a short list for error messages. */
export function describeClasses(classes: readonly string[]): string {
  const head = classes.slice(0, 6).map(printable).join(", ");
  return classes.length > 6 ? `${head}, ... (${classes.length} classes)` : head;
}
