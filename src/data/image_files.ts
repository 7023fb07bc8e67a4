/**
 * Which files count as images when a folder is listed, and the one folder walker every listing
 * uses (ImageFolder classes, CSV manifests, `vit predict DIR`): each real folder and file is visited once, by
 * device and inode, so a link cycle (`up -> ..`) or a second path to the same file can neither
 * loop nor put one image in two classes, or in both train and val.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DataError } from "../errors.js";

/** Extensions of the image formats sharp may decode (HEIC/AVIF only with a libvips built for them). */
const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  ".jpg",
  ".jpeg",
  ".png",
  ".webp",
  ".gif",
  ".tif",
  ".tiff",
  ".avif",
  ".heic",
  ".heif",
]);

export function isImagePath(p: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(p).toLowerCase());
}

/** Code-point order, as torchvision sorts class folders and files. */
export const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/** Where a skipped link leads, for the warning (the link itself when it cannot be resolved). */
function target(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

/** One listing: remembers every real folder and file it has handed out. */
export class ImageWalk {
  private readonly seen = new Set<string>();

  /** `warn` gets one line per skipped link or repeated file (default: stderr). */
  constructor(
    private readonly warn: (message: string) => void = (m) => process.stderr.write(`warning: ${m}\n`),
  ) {}

  /**
   * Marks a folder as listed before its turn (the ImageFolder root and every class folder), so
   * a link from one class into another is skipped; false, with a warning, when it was listed already.
   */
  enter(dir: string): boolean {
    return this.claim(dir);
  }

  /** A file or folder named directly (a CSV manifest row): true the first time, false with a warning after. */
  claim(p: string): boolean {
    const st = statOrNull(p);
    if (!st || this.first(st)) return true;
    this.skip(p, st.isDirectory());
    return false;
  }

  /** Image files under `dir` at any depth, sorted, hidden entries skipped, each real one once. */
  images(dir: string): string[] {
    const out: string[] = [];
    const walk = (d: string) => {
      let names: string[];
      try {
        names = fs.readdirSync(d).sort(byCodePoint);
      } catch (err) {
        throw new DataError(`${d}: cannot list this folder (${(err as NodeJS.ErrnoException).code ?? err})`);
      }
      for (const name of names) {
        if (name.startsWith(".")) continue;
        const p = path.join(d, name);
        const st = statOrNull(p);
        const isDir = st?.isDirectory() === true;
        // A dangling link or unreadable entry with an image name is kept: decoding names it.
        if (!isDir && !isImagePath(name)) continue;
        if (st && !this.first(st)) {
          this.skip(p, isDir);
          continue;
        }
        if (isDir) walk(p);
        else out.push(p);
      }
    };
    walk(dir);
    return out;
  }

  /** True the first time this real folder or file is met. */
  private first(st: fs.Stats): boolean {
    const key = `${st.dev}:${st.ino}`;
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }

  private skip(p: string, isDir: boolean): void {
    this.warn(
      isDir
        ? `skipping ${p}: it leads to ${target(p)}, a folder already listed (a link cycle or a second path)`
        : `skipping ${p}: the same file as one already listed (${target(p)})`,
    );
  }
}
