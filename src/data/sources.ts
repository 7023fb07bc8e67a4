/**
 * From `data.train` / `data.val` to datasets, with every problem found before training starts:
 * a missing or empty folder, a class without images, a CSV with an unknown column or label.
 */
import * as fs from "node:fs";
import type { DataConfig } from "../config/schema.js";
import { DataError } from "../errors.js";
import { readCsvManifest } from "./csv_manifest.js";
import { type Dataset, describeClasses, type OpenOptions } from "./dataset.js";
import { ImageWalk } from "./image_files.js";
import { scanImageFolder } from "./image_folder.js";
import { stratifiedSplit } from "./split.js";
import { ensureSynthetic } from "./synthetic.js";

/** An ImageFolder directory or a CSV manifest; any problem is a DataError naming the file. */
export function openDataset(source: string, opts: OpenOptions = {}): Dataset {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(source);
  } catch {
    throw new DataError(`${source}: no such folder or CSV file`);
  }
  if (stat.isDirectory()) return scanImageFolder(source, opts);
  if (source.toLowerCase().endsWith(".csv")) return readCsvManifest(source, opts);
  throw new DataError(`${source}: expected an ImageFolder directory or a .csv manifest`);
}

export interface LoadOptions {
  /** Seeds the val_split hold-out. */
  seed: number;
  /** The model's image size: the synthetic dataset is drawn at 1.25x it (40 px for 32). */
  imgSize: number;
  /** model.num_classes when set: the data must have exactly that many classes. */
  numClasses?: number | null;
  /** Where the synthetic dataset is kept (default: $VIT_CACHE_DIR, $XDG_CACHE_HOME/vit, ~/.cache/vit). */
  cacheDir?: string;
}

export interface Datasets {
  classes: readonly string[];
  train: Dataset;
  val: Dataset;
}

export async function loadDatasets(data: DataConfig, opts: LoadOptions): Promise<Datasets> {
  const trainSource =
    data.train === "synthetic"
      ? await ensureSynthetic({
          perClass: data.synthetic_per_class,
          size: Math.max(8, Math.ceil(opts.imgSize * 1.25)),
          cacheDir: opts.cacheDir,
        })
      : data.train;
  // One walk for both folders: a file reachable from train and val is listed in train only.
  const walk = new ImageWalk();
  const all = openDataset(trainSource, { walk });
  const { classes } = all;
  if (classes.length < 2) {
    throw new DataError(
      `${data.train}: found ${classes.length} class (${describeClasses(classes)}); a classifier needs at least two classes`,
    );
  }
  if (opts.numClasses != null && opts.numClasses !== classes.length) {
    throw new DataError(
      `${data.train}: has ${classes.length} classes but model.num_classes is ${opts.numClasses} ` +
        "(set it to null to take it from the data)",
    );
  }
  let train = all;
  let val: Dataset;
  if (data.val) val = openDataset(data.val, { classes, walk });
  else {
    ({ train, val } = stratifiedSplit(all, data.val_split, opts.seed));
  }
  if (train.samples.length === 0)
    throw new DataError(`${data.train}: no training images left after the split`);
  return { classes, train, val };
}
