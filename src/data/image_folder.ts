/**
 * ImageFolder: root/<class>/<image>, classes = sorted sub-folder names (code-point order, as
 * torchvision), images found at any depth inside a class folder. Hidden files and folders are
 * ignored, and so are files whose extension no decoder here reads.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DataError } from "../errors.js";
import { classIndex, type Dataset, describeClasses, type OpenOptions, type Sample } from "./dataset.js";
import { byCodePoint, ImageWalk } from "./image_files.js";

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export function scanImageFolder(root: string, opts: OpenOptions = {}): Dataset {
  const walk = opts.walk ?? new ImageWalk();
  // The root and every class folder count as listed first: a link into one is skipped.
  walk.enter(root);
  const folders = fs
    .readdirSync(root)
    .filter((name) => !name.startsWith(".") && isDir(path.join(root, name)))
    .sort(byCodePoint)
    .filter((name) => walk.enter(path.join(root, name)));
  if (folders.length === 0) {
    const loose = walk.images(root).length;
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
    const files = walk.images(path.join(root, name));
    if (files.length === 0) throw new DataError(`${path.join(root, name)}: class "${name}" has no images`);
    for (const file of files) samples.push({ path: file, label });
  }
  return { source: root, classes, samples };
}
