/** Positioned reads of large weight files (safetensors, .npz) without loading them whole. */
import * as fs from "node:fs";
import { DataError } from "../errors.js";

/** Runs `body` on `file` opened for reading, with its size; the file is closed however `body` ends. */
export function withReadFd<T>(file: string, body: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (err) {
    throw new DataError(`cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return body(fd, fs.fstatSync(fd).size);
  } finally {
    fs.closeSync(fd);
  }
}
