/**
 * safetensors (https://github.com/huggingface/safetensors), the checkpoint format timm, PyTorch and
 * the Hugging Face hub read as-is:
 *
 *   [8 bytes]  N, u64 little-endian
 *   [N bytes]  JSON {"__metadata__": {str: str}, name: {dtype, shape, data_offsets: [begin, end]}, ...}
 *   [rest]     raw little-endian tensor bytes; offsets are relative to the start of this section
 *
 * Reading decodes every numeric dtype to float32 (F32, F16, BF16 exactly; F64 rounded; integer and
 * BOOL tensors converted by value, exact up to 2^24). F8 dtypes are rejected. Every malformed header
 * is a DataError naming the file and the tensor, checked before any tensor-sized allocation.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { DataError, printable } from "../errors.js";
import { writeFileAtomic } from "./atomic.js";
import { withReadFd } from "./read_fd.js";
import { refuseTorchFile } from "./torch_file.js";

/** A host-side tensor in PyTorch layout: row-major float32. */
export interface TensorData {
  shape: number[];
  data: Float32Array;
}

/** A tensor as read from a file; `dtype` is the file's dtype before decoding to float32. */
export interface LoadedTensor extends TensorData {
  dtype: string;
}

export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** [begin, end) byte range within the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  /** In the header's order. */
  tensors: Map<string, TensorInfo>;
  /** File offset of the data section (8 + N). */
  dataStart: number;
}

/** No real header comes near this; a larger length means a corrupt or hostile file. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Bytes per element of every dtype in the safetensors spec. */
const DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** Decoders from a tensor's raw bytes (in their own, hence aligned, ArrayBuffer) to float32. */
const DECODERS: Readonly<Record<string, (raw: ArrayBuffer) => Float32Array>> = {
  F16: (raw) => {
    const table = halfTable();
    const h = new Uint16Array(raw);
    const out = new Float32Array(h.length);
    for (let i = 0; i < h.length; i++) out[i] = table[h[i]];
    return out;
  },
  // bfloat16 is the upper half of a float32: shifting the bits back is exact.
  BF16: (raw) => {
    const h = new Uint16Array(raw);
    const out = new Float32Array(h.length);
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < h.length; i++) bits[i] = h[i] << 16;
    return out;
  },
  F64: (raw) => Float32Array.from(new Float64Array(raw)),
  I64: (raw) => Float32Array.from(new BigInt64Array(raw), Number),
  U64: (raw) => Float32Array.from(new BigUint64Array(raw), Number),
  I32: (raw) => Float32Array.from(new Int32Array(raw)),
  U32: (raw) => Float32Array.from(new Uint32Array(raw)),
  I16: (raw) => Float32Array.from(new Int16Array(raw)),
  U16: (raw) => Float32Array.from(new Uint16Array(raw)),
  I8: (raw) => Float32Array.from(new Int8Array(raw)),
  U8: (raw) => Float32Array.from(new Uint8Array(raw)),
  BOOL: (raw) => Float32Array.from(new Uint8Array(raw), (b) => (b ? 1 : 0)),
};

/** Reads and validates only the header: cheap metadata access (e.g. `vit eval --checkpoint`). */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  return withFile(file, (fd, size) => readHeader(fd, size, file));
}

/** Reads every tensor, decoded to float32, into its own (aligned) Float32Array. */
export function readSafetensors(file: string): {
  tensors: Map<string, LoadedTensor>;
  metadata: Record<string, string>;
} {
  return withFile(file, (fd, size) => {
    const header = readHeader(fd, size, file);
    const tensors = new Map<string, LoadedTensor>();
    for (const [name, info] of header.tensors) {
      const decode = DECODERS[info.dtype];
      if (info.dtype !== "F32" && !decode) {
        throw new DataError(`${file}: tensor "${name}": dtype ${info.dtype} is not supported`);
      }
      const [begin, end] = info.dataOffsets;
      const position = header.dataStart + begin;
      // F32 is read straight into the result; other dtypes into a scratch buffer, then decoded.
      const data =
        info.dtype === "F32"
          ? readInto(fd, new Float32Array((end - begin) / 4), position, file, name)
          : decode(readInto(fd, new Uint8Array(end - begin), position, file, name).buffer);
      tensors.set(name, { dtype: info.dtype, shape: info.shape, data });
    }
    return { tensors, metadata: header.metadata };
  });
}

/**
 * Writes F32 tensors in the map's order with an optional `__metadata__` string map, the header
 * padded with spaces so the data section starts 8-byte aligned. Atomic: temp file + rename.
 */
export function writeSafetensors(
  file: string,
  tensors: ReadonlyMap<string, TensorData>,
  metadata?: Record<string, string>,
): void {
  writeFileAtomic(file, encodeSafetensors(file, tensors, metadata));
}

/**
 * The bytes `writeSafetensors` writes, as chunks (the tensors' own memory, not a copy), for a
 * caller that saves several files as one (writeFilesAtomic); `file` names problems. Validated now.
 */
export function encodeSafetensors(
  file: string,
  tensors: ReadonlyMap<string, TensorData>,
  metadata?: Record<string, string>,
): Iterable<Uint8Array> {
  assertLittleEndian();
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") {
        throw new DataError(`${file}: __metadata__ "${key}" must be a string, got ${typeof value}`);
      }
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === "__metadata__") throw new DataError(`${file}: "__metadata__" cannot name a tensor`);
    const count = elementCount(t.shape);
    if (count === null) {
      throw new DataError(`${file}: tensor "${name}": shape ${fmt(t.shape)} is not a list of sizes`);
    }
    if (count !== t.data.length) {
      throw new DataError(
        `${file}: tensor "${name}": shape ${fmt(t.shape)} needs ${count} values, got ${t.data.length}`,
      );
    }
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const n = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const head = Buffer.alloc(8 + n, 0x20);
  head.writeBigUInt64LE(BigInt(n), 0);
  json.copy(head, 8);
  return tensorChunks(head, tensors);
}

function* tensorChunks(head: Uint8Array, tensors: ReadonlyMap<string, TensorData>): Generator<Uint8Array> {
  yield head;
  for (const t of tensors.values()) yield new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function withFile<T>(file: string, body: (fd: number, size: number) => T): T {
  assertLittleEndian();
  return withReadFd(file, body);
}

function readHeader(fd: number, size: number, file: string): SafetensorsHeader {
  refuseTorchFile(fd, file, "safetensors");
  if (size < 8) {
    throw new DataError(
      `${file}: not a safetensors file: ${size} bytes, shorter than the 8-byte header length`,
    );
  }
  const lengthBytes = readInto(fd, new Uint8Array(8), 0, file, "header length");
  const n = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  if (n > BigInt(size - 8)) {
    throw new DataError(`${file}: header length ${n} runs past the end of the file (${size} bytes)`);
  }
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new DataError(`${file}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const dataStart = 8 + Number(n);
  const text = Buffer.from(readInto(fd, new Uint8Array(dataStart - 8), 8, file, "header").buffer).toString(
    "utf8",
  );
  return { ...parseHeader(text, size - dataStart, file), dataStart };
}

/** Validates the header JSON against a data section of `dataBytes` bytes. */
function parseHeader(
  text: string,
  dataBytes: number,
  file: string,
): { metadata: Record<string, string>; tensors: Map<string, TensorInfo> } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new DataError(`${file}: header is not valid JSON: ${printable((err as Error).message)}`);
  }
  if (!isObject(raw)) throw new DataError(`${file}: header is not a JSON object`);
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(raw)) {
    if (name === "__metadata__") {
      if (!isObject(entry)) throw new DataError(`${file}: __metadata__ is not an object of strings`);
      for (const [key, value] of Object.entries(entry)) {
        if (typeof value !== "string") {
          throw new DataError(`${file}: __metadata__ "${key}" is not a string (${JSON.stringify(value)})`);
        }
        metadata[key] = value;
      }
      continue;
    }
    tensors.set(name, parseEntry(entry, dataBytes, `${file}: tensor "${name}"`));
  }
  checkOverlaps(tensors, file);
  return { metadata, tensors };
}

function parseEntry(entry: unknown, dataBytes: number, where: string): TensorInfo {
  if (!isObject(entry)) throw new DataError(`${where}: entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string" || !(dtype in DTYPE_BYTES)) {
    throw new DataError(
      `${where}: unknown dtype ${JSON.stringify(dtype)} (expected one of ${Object.keys(DTYPE_BYTES).join(", ")})`,
    );
  }
  const count = Array.isArray(shape) ? elementCount(shape) : null;
  if (count === null) {
    throw new DataError(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw new DataError(
      `${where}: data_offsets ${JSON.stringify(offsets)} is not a [begin, end] pair with 0 <= begin <= end`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataBytes) {
    throw new DataError(
      `${where}: data_offsets [${begin}, ${end}] run past the end of the data section (${dataBytes} bytes)`,
    );
  }
  const needed = count * DTYPE_BYTES[dtype];
  if (end - begin !== needed) {
    throw new DataError(
      `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape ${fmt(shape as number[])} of ${dtype} needs ${needed}`,
    );
  }
  return { dtype, shape: [...(shape as number[])], dataOffsets: [begin, end] };
}

/** Two tensors sharing bytes would alias each other's data: a corrupt (or hostile) file. */
function checkOverlaps(tensors: Map<string, TensorInfo>, file: string): void {
  const spans = [...tensors]
    .filter(([, t]) => t.dataOffsets[1] > t.dataOffsets[0])
    .sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0]);
  for (let i = 1; i < spans.length; i++) {
    const [prevName, prev] = spans[i - 1];
    const [name, t] = spans[i];
    if (t.dataOffsets[0] < prev.dataOffsets[1]) {
      throw new DataError(
        `${file}: tensor "${name}": data_offsets [${t.dataOffsets}] overlap tensor "${prevName}" [${prev.dataOffsets}]`,
      );
    }
  }
}

/** Reads exactly `into.byteLength` bytes at `position`; a short read means the file changed under us. */
function readInto<T extends ArrayBufferView>(
  fd: number,
  into: T,
  position: number,
  file: string,
  what: string,
): T {
  const bytes = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
  // readSync is limited to 2 GiB per call.
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < bytes.length) {
    const got = fs.readSync(fd, bytes, done, Math.min(CHUNK, bytes.length - done), position + done);
    if (got === 0) throw new DataError(`${file}: ${what}: file ended early (truncated while reading?)`);
    done += got;
  }
  return into;
}

/** Product of the sizes, or null when a size is not a non-negative integer or the count overflows. */
function elementCount(shape: unknown[]): number | null {
  let count = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || (d as number) < 0) return null;
    count *= d as number;
  }
  return Number.isSafeInteger(count * 8) ? count : null;
}

let HALF_TABLE: Float32Array | null = null;

/** float16 -> float32 for all 65536 bit patterns (256 KiB, built on first use). */
function halfTable(): Float32Array {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >> 10) & 0x1f;
      const frac = h & 0x3ff;
      HALF_TABLE[h] =
        exp === 0
          ? sign * frac * 2 ** -24
          : exp === 31
            ? frac
              ? Number.NaN
              : sign * Number.POSITIVE_INFINITY
            : sign * (1 + frac / 1024) * 2 ** (exp - 15);
    }
  }
  return HALF_TABLE;
}

function assertLittleEndian(): void {
  // Tensor bytes are copied to and from typed arrays without swapping.
  if (os.endianness() !== "LE") throw new DataError("safetensors I/O needs a little-endian host");
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
