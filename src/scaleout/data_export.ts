/**
 * `vit data export`: the train and val sets a config trains on, as the ImageFolder timm's train.py
 * reads (layout in timm_folder.ts). The sets come from src/data exactly as `vit train` loads them
 * (synthetic at its configured size, the seeded val_split hold-out), so the export is as
 * deterministic as the config. Files are hard links (no extra space; they outlive the synthetic
 * cache) or copies across file systems or with `copy`; an image timm cannot read (.webp, .tif, ...)
 * is re-encoded as PNG.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Config } from "../config/schema.js";
import type { Dataset } from "../data/dataset.js";
import { loadDatasets } from "../data/sources.js";
import { DataError, UsageError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import { CLASS_MAP, classMapText, TRAIN_SPLIT, timmReadsImage, VAL_SPLIT } from "./timm_folder.js";

export interface DataExportOptions {
  /** Copy every file instead of hard-linking it. */
  copy?: boolean;
  /** Where the synthetic set is generated (default: vit's cache). */
  cacheDir?: string;
}

export interface DataExportSummary {
  dir: string;
  classes: readonly string[];
  train: number;
  val: number;
  linked: number;
  copied: number;
  converted: number;
}

export async function exportImageFolder(
  cfg: Config,
  out: string,
  opts: DataExportOptions = {},
): Promise<DataExportSummary> {
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0) {
    throw new UsageError(
      `--out ${out}: the folder is not empty (an export is written into an empty or new folder)`,
    );
  }
  const data = await loadDatasets(cfg.data, {
    seed: cfg.train.seed,
    imgSize: cfg.model.img_size,
    numClasses: cfg.model.num_classes,
    cacheDir: opts.cacheDir,
  });
  for (const name of data.classes) checkFolderName(name, cfg.data.train);
  const summary: DataExportSummary = {
    dir: out,
    classes: data.classes,
    train: data.train.samples.length,
    val: data.val.samples.length,
    linked: 0,
    copied: 0,
    converted: 0,
  };
  fs.mkdirSync(out, { recursive: true });
  await writeSplit(data.train, path.join(out, TRAIN_SPLIT), opts, summary);
  await writeSplit(data.val, path.join(out, VAL_SPLIT), opts, summary);
  writeFileAtomic(path.join(out, CLASS_MAP), classMapText(data.classes));
  return summary;
}

/** A class becomes a folder name, so it must be one (CSV labels can be anything). */
function checkFolderName(name: string, source: string): void {
  if (name === "" || name.startsWith(".") || /[/\\\0\n]/.test(name)) {
    throw new DataError(
      `${source}: class "${name}" cannot be a folder name (timm reads classes from folder names)`,
    );
  }
}

async function writeSplit(
  ds: Dataset,
  dir: string,
  opts: DataExportOptions,
  summary: DataExportSummary,
): Promise<void> {
  // Files from nested folders or a CSV may share a base name; the first keeps it.
  const taken = new Set<string>();
  for (const { path: src, label } of ds.samples) {
    const classDir = path.join(dir, ds.classes[label]);
    const readable = timmReadsImage(src);
    const base = readable ? path.basename(src) : `${path.parse(src).name}.png`;
    let name = base;
    for (let n = 1; taken.has(path.join(classDir, name)); n++) name = `${n}_${base}`;
    const dest = path.join(classDir, name);
    taken.add(dest);
    fs.mkdirSync(classDir, { recursive: true });
    if (!readable) {
      const { default: sharp } = await import("sharp");
      await sharp(src).png().toFile(dest);
      summary.converted++;
    } else if (!opts.copy && tryLink(src, dest)) summary.linked++;
    else {
      fs.copyFileSync(src, dest);
      summary.copied++;
    }
  }
}

/** A hard link, or false where the file system cannot make one (another device, no link support). */
function tryLink(src: string, dest: string): boolean {
  try {
    fs.linkSync(src, dest);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EXDEV" || code === "EPERM" || code === "ENOTSUP" || code === "EMLINK") return false;
    throw err;
  }
}
