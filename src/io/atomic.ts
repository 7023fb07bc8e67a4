/**
 * Crash-safe file replacement (docs/design.md "Training": writes are atomic). Readers see either the
 * old file or the complete new one, never a half-written checkpoint after a crash or Ctrl-C.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { VitError } from "../errors.js";

/** What a file is written from: text, bytes, or a sequence of chunks (checkpoints, without joining them). */
export type FileData = string | Uint8Array | Iterable<Uint8Array>;

/**
 * Writes `data` to a temp file in the target's folder (rename is only atomic within one file
 * system), fsyncs it, then renames it over `file`. On any failure the temp file is removed and
 * an existing `file` is left untouched, and the error says so.
 *
 * `data` may be a sequence of chunks so large files (checkpoints) are written without first being
 * joined into one buffer; an error thrown while producing a chunk aborts the write the same way.
 */
export function writeFileAtomic(file: string, data: FileData): void {
  writeFilesAtomic([[file, data]]);
}

/**
 * Replaces several files as one save (a checkpoint and its state file): every temp file is
 * written and synced before the first rename, so a failed write (ENOSPC, EIO) replaces none of
 * them. The renames happen in the given order.
 */
export function writeFilesAtomic(files: readonly (readonly [string, FileData])[]): void {
  const written: [tmp: string, file: string][] = [];
  try {
    for (const [file, data] of files) written.push([writeTemp(file, data), file]);
  } catch (err) {
    for (const [tmp] of written) removeQuietly(tmp);
    throw err;
  }
  for (const [tmp, file] of written) {
    try {
      fs.renameSync(tmp, file);
    } catch (err) {
      removeQuietly(tmp);
      throw new VitError(`cannot write ${file}: ${reason(file, err as NodeJS.ErrnoException)}${kept(file)}`);
    }
  }
  for (const dir of new Set(files.map(([file]) => path.dirname(file)))) syncDir(dir);
}

/** The temp file beside `file` holding all of `data`, synced to disk. */
function writeTemp(file: string, data: FileData): string {
  const tmp = path.join(
    path.dirname(file),
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
    return tmp;
  } catch (err) {
    if (fd !== null) closeQuietly(fd);
    removeQuietly(tmp);
    if (err instanceof VitError) throw err;
    throw new VitError(`cannot write ${file}: ${reason(file, err as NodeJS.ErrnoException)}${kept(file)}`);
  }
}

/** "; the previous FILE is kept" when there is one: a failed save never costs the last good file. */
function kept(file: string): string {
  return fs.existsSync(file) ? `; the previous ${file} is kept` : "";
}

function removeQuietly(tmp: string): void {
  try {
    fs.rmSync(tmp, { force: true });
  } catch {
    // no temp file was made (its folder cannot hold one): nothing to clean up
  }
}

/** `mkdir -p dir`, with one sentence naming the path when a file stands where a folder must go. */
export function makeDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new VitError(`cannot create the folder ${dir}: ${reason(dir, err as NodeJS.ErrnoException)}`);
  }
}

/**
 * Why `p` cannot be written: for ENOTDIR / EEXIST / EISDIR (a file where a folder must go, or a
 * folder where the file must go) a sentence naming that path; else the system's message.
 */
function reason(p: string, err: NodeJS.ErrnoException): string {
  if (err.code === "EISDIR") return `${p} is a folder`;
  if (err.code === "ENOTDIR" || err.code === "EEXIST") {
    const abs = path.resolve(p);
    const parts = abs.split(path.sep);
    for (let i = 2; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join(path.sep);
      let isFile = false;
      try {
        isFile = !fs.statSync(prefix).isDirectory();
      } catch {
        break;
      }
      if (isFile) {
        const rel = path.relative(process.cwd(), prefix);
        return `${rel.startsWith("..") ? prefix : rel} is a file, not a folder`;
      }
    }
  }
  return err.message;
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
