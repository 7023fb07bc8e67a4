/**
 * Images the data tests make for themselves: small patterned files in every format the loader must
 * read, and the battery of bad files it must survive.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import sharp from "sharp";

const made: string[] = [];

export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vit-${prefix}-`));
  made.push(dir);
  return dir;
}

/** Remove every folder tempDir made (call from an `after` hook). */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** A w x h RGB image whose pixel values are a deterministic function of (x, y, channel, seed). */
export function pattern(w: number, h: number, seed = 0): Buffer {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        const v =
          128 +
          90 * Math.sin(0.37 * x + 1.3 * c + seed) * Math.cos(0.23 * y - seed) +
          ((x * 7 + y * 13 + c * 29 + seed * 31) % 17);
        px[(y * w + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return px;
}

export async function writePng(file: string, w: number, h: number, seed = 0): Promise<Buffer> {
  const px = pattern(w, h, seed);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(file);
  return px;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A 1 kB PNG whose header declares 100000 x 100000 pixels. */
export function bombPng(): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(100_000, 0);
  ihdr.writeUInt32BE(100_000, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", zlib.deflateSync(Buffer.alloc(1000))),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

/** A valid 2x2 BMP: a format sharp does not read. */
function bmp(): Buffer {
  const b = Buffer.alloc(70);
  b.write("BM", 0, "latin1");
  b.writeUInt32LE(70, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(2, 18);
  b.writeInt32LE(2, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  return b;
}

/** The bad-file battery, written into dir; returns the file names. */
export async function writeBadFiles(dir: string): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const noise = {
    create: {
      width: 120,
      height: 90,
      channels: 3 as const,
      background: "#000",
      noise: { type: "gaussian" as const, mean: 128, sigma: 50 },
    },
  };
  const jpeg = await sharp(noise).jpeg().toBuffer();
  const png = await sharp(noise).png().toBuffer();
  const files: Record<string, Buffer> = {
    "zero-byte.jpg": Buffer.alloc(0),
    "truncated.jpg": jpeg.subarray(0, jpeg.length >> 1),
    "truncated.png": png.subarray(0, png.length >> 1),
    "text.jpg": Buffer.from("this is not an image\n"),
    "bitmap.png": bmp(),
    "one-pixel.png": await sharp(Buffer.from([10, 20, 30]), { raw: { width: 1, height: 1, channels: 3 } })
      .png()
      .toBuffer(),
    "bomb.png": bombPng(),
  };
  for (const [name, data] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), data);
  return Object.keys(files);
}

/** An ImageFolder root/<class>/<i>.png of small patterned images. */
export async function writeImageFolder(
  root: string,
  classes: Record<string, number>,
  size: [number, number] = [24, 20],
): Promise<void> {
  let seed = 0;
  for (const [cls, n] of Object.entries(classes)) {
    for (let i = 0; i < n; i++) await writePng(path.join(root, cls, `${i}.png`), size[0], size[1], seed++);
  }
}
