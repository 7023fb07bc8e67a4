/**
 * Crash-safe file replacement (docs/design.md "Training": writes are atomic). Readers see either the
 * old file or the complete new one, never a half-written checkpoint after a crash or Ctrl-C.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { VitError } from "../errors.js";

/**
 * Writes `data` to a temp file in the target's folder (rename is only atomic within one file
 * system), fsyncs it, then renames it over `file`. On any failure the temp file is removed and
 * an existing `file` is left untouched.
 *
 * `data` may be a sequence of chunks so large files (checkpoints) are written without first being
 * joined into one buffer; an error thrown while producing a chunk aborts the write the same way.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array | Iterable<Uint8Array>): void {
  const dir = path.dirname(file);
  const tmp = path.join(
    dir,
    `.${path.basename(file)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`,
  );
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, "wx");
    const chunks =
      typeof data === "string" ? [Buffer.from(data, "utf8")] : data instanceof Uint8Array ? [data] : data;
    for (const chunk of chunks) writeAll(fd, chunk);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== null) closeQuietly(fd);
    fs.rmSync(tmp, { force: true });
    if (err instanceof VitError) throw err;
    throw new VitError(`cannot write ${file}: ${(err as Error).message}`);
  }
  syncDir(dir);
}

function writeAll(fd: number, chunk: Uint8Array): void {
  let done = 0;
  while (done < chunk.byteLength) done += fs.writeSync(fd, chunk, done, chunk.byteLength - done);
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already failing: the first error is the one worth reporting
  }
}

/** Makes the rename itself durable. Some platforms (Windows) cannot open a folder: best effort. */
function syncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    // the data is already safe in the renamed file; only the directory entry's durability is lost
  } finally {
    if (fd !== null) closeQuietly(fd);
  }
}
