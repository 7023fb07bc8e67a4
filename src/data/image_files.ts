/** Which files count as images when a folder is listed (ImageFolder classes, `vit predict DIR`). */
import * as path from "node:path";

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
