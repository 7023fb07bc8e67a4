/**
 * Where timm's train.py finds the data of a config: the configured train and val folders as they
 * are, when timm would read them to the same images and labels, else the ImageFolder that
 * `vit data export` writes (for the synthetic set, a CSV manifest, a `val_split` hold-out, or
 * folders timm would number or filter differently).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Config } from "../config/schema.js";
import type { Dataset } from "../data/dataset.js";
import { openDataset } from "../data/sources.js";
import { SYNTHETIC_CLASSES } from "../data/synthetic.js";
import { CLASS_MAP, TRAIN_SPLIT, timmOrderMatches, timmReadsImage, VAL_SPLIT } from "./timm_folder.js";

export interface DataPlan {
  dataDir: string;
  trainSplit: string;
  valSplit: string;
  /** The class map file timm must read, or null when its own order is the config's. */
  classMap: string | null;
  /** Why `vit data export` has to write the data first, or null when timm reads it as configured. */
  exportReason: string | null;
  /** The classes when the data could be read here (null: not found on this machine). */
  classes: readonly string[] | null;
}

export function planData(cfg: Config, exportDir: string): DataPlan {
  const { train, val } = cfg.data;
  const exported = (exportReason: string, classes: readonly string[] | null): DataPlan => ({
    dataDir: exportDir,
    trainSplit: TRAIN_SPLIT,
    valSplit: VAL_SPLIT,
    classMap: path.join(exportDir, CLASS_MAP),
    exportReason,
    classes,
  });
  if (train === "synthetic")
    return exported("the built-in synthetic set exists only inside vit", SYNTHETIC_CLASSES);
  const trainSet = tryOpen(train);
  const classes = trainSet?.classes ?? null;
  if (train.toLowerCase().endsWith(".csv")) return exported("timm reads no CSV manifest", classes);
  if (!val) {
    return exported(
      `data.val is null: the ${cfg.data.val_split} hold-out of data.train is drawn by vit (seeded), timm needs it as a folder`,
      classes,
    );
  }
  if (val.toLowerCase().endsWith(".csv")) return exported("timm reads no CSV manifest", classes);
  const parent = path.dirname(path.resolve(train));
  if (parent !== path.dirname(path.resolve(val))) {
    return exported(
      "timm reads train and val as two sub-folders of one --data-dir; these are not siblings",
      classes,
    );
  }
  const direct: DataPlan = {
    dataDir: path.dirname(train),
    trainSplit: path.basename(train),
    valSplit: path.basename(val),
    classMap: null,
    exportReason: null,
    classes,
  };
  if (!trainSet || !classes) return direct;
  if (!timmOrderMatches(classes)) {
    return exported("timm would number the classes in another order (natural, case-blind sort)", classes);
  }
  const valSet = tryOpen(val, classes);
  if (valSet && new Set(valSet.samples.map((s) => s.label)).size !== classes.length) {
    return exported("data.val lacks some classes, so timm would number its classes differently", classes);
  }
  const files = [
    ...trainSet.samples.map((s) => [train, s.path]),
    ...(valSet?.samples ?? []).map((s) => [val, s.path]),
  ];
  const unread = files.find(([, file]) => !timmReadsImage(file));
  if (unread) return exported(`timm reads only .png/.jpg/.jpeg files, not ${unread[1]}`, classes);
  // timm labels an image by the folder it sits in; vit by the class folder above any sub-folders.
  const nested = files.find(([root, file]) => path.relative(root, file).split(path.sep).length !== 2);
  if (nested)
    return exported(`timm would label ${nested[1]} by its sub-folder, not its class folder`, classes);
  return direct;
}

/** The dataset, or null when it is not on this machine (the command may be for another one). */
function tryOpen(source: string, classes?: readonly string[]): Dataset | null {
  if (!fs.existsSync(source)) return null;
  return openDataset(source, { classes });
}
