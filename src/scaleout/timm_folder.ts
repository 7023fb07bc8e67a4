/**
 * How timm's train.py reads an ImageFolder (timm/data/readers/reader_image_folder.py,
 * dataset_factory.py) and the layout `vit data export` writes for it:
 *
 *   DIR/train/<class>/<image>   --data-dir DIR --train-split train
 *   DIR/val/<class>/<image>     --val-split val
 *   DIR/class_map.txt           --class-map: one class per line, line i is label i
 *
 * timm numbers the classes of each split on its own, in natural order; the class map pins them to
 * this project's order (code points), so label i means the same class on both sides.
 */
import * as path from "node:path";

export const TRAIN_SPLIT = "train";
export const VAL_SPLIT = "val";
export const CLASS_MAP = "class_map.txt";

/** timm's IMG_EXTENSIONS: files with any other extension are not seen by timm's folder reader. */
const TIMM_IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([".png", ".jpg", ".jpeg"]);

export function timmReadsImage(file: string): boolean {
  return TIMM_IMAGE_EXTENSIONS.has(path.extname(file).toLowerCase());
}

/**
 * timm.utils.misc.natural_key: lower-cased, digit runs compared as numbers ("class2" < "class10").
 * re.split with a capturing group alternates text and digits, so parts at the same index have the
 * same kind.
 */
function naturalKey(s: string): (string | number)[] {
  return s
    .toLowerCase()
    .split(/(\d+)/)
    .map((part, i) => (i % 2 === 1 ? Number(part) : part));
}

export function naturalCompare(a: string, b: string): number {
  const ka = naturalKey(a);
  const kb = naturalKey(b);
  for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
    if (ka[i] !== kb[i]) return ka[i] < kb[i] ? -1 : 1;
  }
  return ka.length - kb.length;
}

/** True when timm, sorting the class folders itself, gives every class the label it has here. */
export function timmOrderMatches(classes: readonly string[]): boolean {
  const sorted = classes.toSorted(naturalCompare);
  return sorted.every((c, i) => c === classes[i]);
}

export function classMapText(classes: readonly string[]): string {
  return `${classes.join("\n")}\n`;
}
