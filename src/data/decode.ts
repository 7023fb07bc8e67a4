/**
 * Reading an image file into something a transform can crop: the encoded bytes and their size
 * after EXIF orientation, checked up front so a bad file fails here with a reason, not deep
 * inside a batch. Every pipeline ends in 8-bit sRGB with alpha flattened, whatever came in
 * (greyscale, 16-bit, CMYK, palette, alpha); greyscale models take their luma in `normalize`.
 */
import * as fs from "node:fs/promises";
import sharp, { type Metadata, type Sharp } from "sharp";

/** PIL's Image.MAX_IMAGE_PIXELS: larger declared sizes are treated as decompression bombs. */
export const MAX_IMAGE_PIXELS = 89_478_485;
/** A side this small is a placeholder (tracking pixel, broken thumbnail), not a picture. */
export const MIN_IMAGE_SIDE = 2;
/** Transparent pixels become white, as a page shows a logo or product shot. */
const BACKGROUND = { r: 255, g: 255, b: 255 };

/** A file that cannot be used as a training image; `reason` says why in a few words. */
export class BadImageError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = "BadImageError";
  }
}

/**
 * An image ready for a transform: either encoded file bytes, or 8-bit RGB pixels kept in memory
 * (`data.cache`) at a working size. Random-resized-crop draws its box in the original size, so
 * a cached image is cropped like the file it came from.
 */
export interface ImageInput {
  file: string;
  data: Uint8Array;
  /** Set when `data` holds raw RGB pixels rather than an encoded file. */
  raw: boolean;
  /** Size of `data`'s image, after EXIF orientation. */
  width: number;
  height: number;
  /** Size of the original image, after EXIF orientation. */
  origWidth: number;
  origHeight: number;
}

function reasonOf(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0].replace(/^Input (buffer|Buffer|file) /, "");
}

/** sharp on this input, with the decoding safeguards every pipeline shares. */
export function sharpOf(img: ImageInput): Sharp {
  if (img.raw) return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });
  return sharp(img.data, { autoOrient: true, failOn: "error", limitInputPixels: MAX_IMAGE_PIXELS });
}

/** Read and probe a file; throws BadImageError when it is empty, unreadable, too big or too small. */
export async function openImage(file: string): Promise<ImageInput> {
  let data: Buffer;
  try {
    data = await fs.readFile(file);
  } catch (err) {
    throw new BadImageError(file, reasonOf(err));
  }
  return probeImage(file, data);
}

/**
 * Probe encoded bytes already in memory (`file` only names them in errors): the same checks as
 * `openImage`, with `maxPixels` lowering the decompression-bomb limit (a server takes less).
 */
export async function probeImage(
  file: string,
  data: Uint8Array,
  maxPixels = MAX_IMAGE_PIXELS,
): Promise<ImageInput> {
  if (data.length === 0) throw new BadImageError(file, "empty file (0 bytes)");
  let meta: Metadata;
  try {
    // The header alone is read here; the size check below names the size and the limit.
    meta = await sharp(data, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new BadImageError(file, reasonOf(err));
  }
  const { width, height } = meta.autoOrient;
  if (!(width > 0 && height > 0)) throw new BadImageError(file, "no image size in the header");
  if (width * height > maxPixels) {
    throw new BadImageError(file, `${width}x${height} is over the ${maxPixels}-pixel limit`);
  }
  if (Math.min(width, height) < MIN_IMAGE_SIDE) {
    throw new BadImageError(file, `${width}x${height} is too small to be an image`);
  }
  return { file, data, raw: false, width, height, origWidth: width, origHeight: height };
}

/**
 * Finish a pipeline as 8-bit sRGB pixels. Decoding happens here, so a truncated or corrupt file
 * surfaces here as a BadImageError.
 */
export async function toRgb(
  file: string,
  pipeline: Sharp,
): Promise<{ data: Buffer; width: number; height: number }> {
  try {
    const { data, info } = await pipeline
      .flatten({ background: BACKGROUND })
      .toColourspace("srgb")
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data, width: info.width, height: info.height };
  } catch (err) {
    throw new BadImageError(file, reasonOf(err));
  }
}
