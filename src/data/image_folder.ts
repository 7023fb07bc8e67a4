/**
 * ImageFolder: root/<class>/<image>, classes = sorted sub-folder names (code-point order, as
 * torchvision), images found at any depth inside a class folder. Hidden files and folders are
 * ignored, and so are files whose extension no decoder here reads.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DataError } from "../errors.js";
import { classIndex, type Dataset, describeClasses, type OpenOptions, type Sample } from "./dataset.js";
import { isImagePath } from "./image_files.js";

const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Image files under dir at any depth, sorted, hidden entries skipped. */
function listImages(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    const names = fs.readdirSync(d).sort(byCodePoint);
    for (const name of names) {
      if (name.startsWith(".")) continue;
      const p = path.join(d, name);
      if (isDir(p)) walk(p);
      else if (isImagePath(name)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

export function scanImageFolder(root: string, opts: OpenOptions = {}): Dataset {
  const folders = fs
    .readdirSync(root)
    .filter((name) => !name.startsWith(".") && isDir(path.join(root, name)))
    .sort(byCodePoint);
  if (folders.length === 0) {
    const loose = listImages(root).length;
    throw new DataError(
      loose > 0
        ? `${root}: found ${loose} images but no class folders (expected ${root}/<class>/<image>)`
        : `${root}: the dataset folder is empty (expected ${root}/<class>/<image>)`,
    );
  }
  const classes = opts.classes ?? folders;
  const index = classIndex(classes);
  const samples: Sample[] = [];
  for (const name of folders) {
    const label = index.get(name);
    if (label === undefined) {
      throw new DataError(
        `${path.join(root, name)}: class "${name}" is not one of the known classes (${describeClasses(classes)})`,
      );
    }
    const files = listImages(path.join(root, name));
    if (files.length === 0) throw new DataError(`${path.join(root, name)}: class "${name}" has no images`);
    for (const file of files) samples.push({ path: file, label });
  }
  return { source: root, classes, samples };
}
