/**
 * NumPy `.npz` archives, the format of Google's original ViT checkpoints: a zip of `.npy` files,
 * stored (np.savez) or deflated (np.savez_compressed), with zip64 records for large files. Only
 * what such checkpoints hold is read: little-endian float32 / float64 arrays in C order.
 *
 *   .npy = "\x93NUMPY" major minor, header length (u16 in v1, u32 in v2/v3), a Python dict literal
 *          {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }, then the raw array bytes.
 */
import * as fs from "node:fs";
import * as zlib from "node:zlib";
import { DataError } from "../errors.js";
import { withReadFd } from "./read_fd.js";
import type { LoadedTensor } from "./safetensors.js";
import { refuseTorchFile } from "./torch_file.js";

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localHeader: number;
}

const SIG = {
  local: 0x04034b50,
  central: 0x02014b50,
  end: 0x06054b50,
  end64: 0x06064b50,
  locator64: 0x07064b50,
};
const MAX_U32 = 0xffffffff;

/** Every array of the archive by its key (the member name without `.npy`), decoded to float32. */
export function readNpz(file: string): Map<string, LoadedTensor> {
  return withReadFd(file, (fd, size) => {
    refuseTorchFile(fd, file, "a .npz archive");
    const out = new Map<string, LoadedTensor>();
    for (const entry of centralDirectory(fd, size, file)) {
      if (!entry.name.endsWith(".npy")) continue;
      const key = entry.name.slice(0, -".npy".length);
      out.set(key, parseNpy(entryBytes(fd, entry, file, size), `${file}: array ${JSON.stringify(key)}`));
    }
    return out;
  });
}

function read(fd: number, position: number, length: number, file: string): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const got = fs.readSync(fd, buf, done, length - done, position + done);
    if (got === 0) throw new DataError(`${file}: not a valid .npz (zip) file: it ends early`);
    done += got;
  }
  return buf;
}

function centralDirectory(fd: number, size: number, file: string): ZipEntry[] {
  // The end record is the last 22 bytes, unless a comment (at most 65535 bytes) follows it.
  const tailStart = Math.max(0, size - 22 - 0xffff);
  const tail = read(fd, tailStart, size - tailStart, file);
  let at = -1;
  for (let i = tail.length - 22; i >= 0 && at < 0; i--) if (tail.readUInt32LE(i) === SIG.end) at = i;
  if (at < 0) throw new DataError(`${file}: not a .npz (zip) file: no end-of-central-directory record`);
  let count = tail.readUInt16LE(at + 10);
  let cdSize = tail.readUInt32LE(at + 12);
  let cdOffset = tail.readUInt32LE(at + 16);
  if (count === 0xffff || cdSize === MAX_U32 || cdOffset === MAX_U32) {
    if (tailStart + at < 20) throw new DataError(`${file}: zip64 locator missing`);
    const locator = read(fd, tailStart + at - 20, 20, file);
    if (locator.readUInt32LE(0) !== SIG.locator64) throw new DataError(`${file}: zip64 locator missing`);
    const end64 = read(fd, Number(locator.readBigUInt64LE(8)), 56, file);
    if (end64.readUInt32LE(0) !== SIG.end64) throw new DataError(`${file}: zip64 end record missing`);
    count = Number(end64.readBigUInt64LE(32));
    cdSize = Number(end64.readBigUInt64LE(40));
    cdOffset = Number(end64.readBigUInt64LE(48));
  }
  // Checked before allocating: a corrupt size must not ask for gigabytes.
  if (cdOffset + cdSize > size) {
    throw new DataError(`${file}: corrupt zip: the central directory runs past the end of the file`);
  }
  const cd = read(fd, cdOffset, cdSize, file);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let n = 0; n < count; n++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG.central) {
      throw new DataError(`${file}: corrupt zip central directory`);
    }
    const [nameLen, extraLen, commentLen] = [
      cd.readUInt16LE(p + 28),
      cd.readUInt16LE(p + 30),
      cd.readUInt16LE(p + 32),
    ];
    const entry: ZipEntry = {
      name: cd.toString("utf8", p + 46, p + 46 + nameLen),
      method: cd.readUInt16LE(p + 10),
      compressedSize: cd.readUInt32LE(p + 20),
      size: cd.readUInt32LE(p + 24),
      localHeader: cd.readUInt32LE(p + 42),
    };
    if (cd.readUInt16LE(p + 8) & 1)
      throw new DataError(`${file}: ${JSON.stringify(entry.name)} is encrypted`);
    if (p + 46 + nameLen + extraLen > cd.length)
      throw new DataError(`${file}: corrupt zip central directory`);
    readZip64Extra(cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen), entry);
    entries.push(entry);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** Sizes and offset that do not fit 32 bits are in the zip64 extra field (id 1), in this order. */
function readZip64Extra(extra: Buffer, entry: ZipEntry): void {
  for (let q = 0; q + 4 <= extra.length; q += 4 + extra.readUInt16LE(q + 2)) {
    if (extra.readUInt16LE(q) !== 1) continue;
    let r = q + 4;
    for (const field of ["size", "compressedSize", "localHeader"] as const) {
      if (entry[field] === MAX_U32) {
        entry[field] = Number(extra.readBigUInt64LE(r));
        r += 8;
      }
    }
  }
}

function entryBytes(fd: number, e: ZipEntry, file: string, size: number): Uint8Array {
  const name = JSON.stringify(e.name);
  if (e.localHeader + 30 > size) throw new DataError(`${file}: corrupt zip entry ${name}`);
  const local = read(fd, e.localHeader, 30, file);
  if (local.readUInt32LE(0) !== SIG.local) throw new DataError(`${file}: corrupt zip entry ${name}`);
  const start = e.localHeader + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
  if (start + e.compressedSize > size) {
    throw new DataError(`${file}: zip entry ${name} runs past the end of the file`);
  }
  const raw = read(fd, start, e.compressedSize, file);
  if (e.method === 0) return raw;
  if (e.method === 8) {
    try {
      // Never more than the size the directory declares: a deflate bomb stops there.
      return zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
    } catch (err) {
      throw new DataError(`${file}: zip entry ${name} does not inflate: ${(err as Error).message}`);
    }
  }
  throw new DataError(`${file}: ${name} uses zip compression method ${e.method} (only stored and deflate)`);
}

const DECODE: Record<string, (bytes: ArrayBuffer) => Float32Array> = {
  f4: (b) => new Float32Array(b),
  f8: (b) => Float32Array.from(new Float64Array(b)),
};

export function parseNpy(bytes: Uint8Array, where: string): LoadedTensor {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 10 || buf.toString("latin1", 0, 6) !== "\x93NUMPY") {
    throw new DataError(`${where}: not a .npy array (bad magic)`);
  }
  const major = buf[6];
  const headerStart = major === 1 ? 10 : 12;
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.length >= 12 ? buf.readUInt32LE(8) : Infinity;
  if (headerStart + headerLen > buf.length)
    throw new DataError(`${where}: the .npy header runs past the array`);
  const header = buf.toString("latin1", headerStart, headerStart + headerLen);
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new DataError(`${where}: unreadable .npy header ${JSON.stringify(header.trim())}`);
  }
  const shape = shapeText
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new DataError(`${where}: shape (${shapeText.trim()}) is not a list of sizes`);
  }
  const decode = /^[<|=]/.test(descr) ? DECODE[descr.slice(1)] : undefined;
  if (!decode) throw new DataError(`${where}: dtype ${descr} is not supported (only little-endian f4, f8)`);
  if (fortran === "True") throw new DataError(`${where}: Fortran-ordered arrays are not supported`);
  const count = shape.reduce((a, b) => a * b, 1);
  const itemSize = Number(descr.slice(2));
  if (!Number.isSafeInteger(count * itemSize)) throw new DataError(`${where}: shape [${shape}] is too large`);
  const begin = buf.byteOffset + headerStart + headerLen;
  if (headerStart + headerLen + count * itemSize > buf.length) {
    throw new DataError(`${where}: shape [${shape}] needs ${count * itemSize} bytes, the array is shorter`);
  }
  // slice(): an aligned copy, whatever the array's offset in the archive.
  const data = decode(buf.buffer.slice(begin, begin + count * itemSize) as ArrayBuffer);
  return { dtype: descr, shape, data };
}

/** Whether `file` is a zip (so an .npz), by its first bytes, "PK", not by its name; a PyTorch file is refused. */
export function isNpz(file: string): boolean {
  const head = Buffer.alloc(2);
  withReadFd(file, (fd) => {
    // A PyTorch zip is a zip too: say what it is here, before it is taken for an .npz.
    refuseTorchFile(fd, file, "safetensors or .npz");
    fs.readSync(fd, head, 0, head.length, 0);
  });
  return head.toString("latin1") === "PK";
}
