/**
 * `vit predict IMAGE|DIR|GLOB ...` arguments to a list of files. Node 20 has no fs.glob, so
 * this is a small matcher for `*`, `?` and `**` (what shells expand; quoted patterns reach us).
 * A folder or a pattern yields the image files it holds (by extension, hidden files skipped);
 * a file named explicitly is always tried, whatever its extension, so a bad one gets an error.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { ImageWalk, isImagePath } from "../data/image_files.js";

export function hasGlob(s: string): boolean {
  return /[*?]/.test(s);
}

/** One path segment's pattern (`*`, `?`, literal text) as an anchored RegExp. */
export function segmentRegExp(segment: string): RegExp {
  const body = segment
    .split("")
    .map((ch) => (ch === "*" ? "[^/]*" : ch === "?" ? "[^/]" : ch.replace(/[\\^$.|+()[\]{}]/g, "\\$&")))
    .join("");
  return new RegExp(`^${body}$`);
}

function entries(dir: string): fs.Dirent[] {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch {
    return [];
  }
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * Image files under `dir`, recursively, sorted, as `dir`-prefixed paths; a folder `walk` has
 * listed already (a link cycle, or two arguments naming one folder) gives none.
 */
export function imagesInDir(dir: string, walk: ImageWalk = new ImageWalk()): string[] {
  return walk.enter(dir) ? walk.images(dir) : [];
}

/**
 * Files matching `pattern` (segments split on "/"; `**` is zero or more folders), relative
 * paths kept relative. Hidden entries match only a segment that itself starts with ".".
 */
export function glob(pattern: string, listing: ImageWalk = new ImageWalk()): string[] {
  const segments = pattern.split(/[\\/]+/);
  const absolute = pattern.startsWith("/");
  const first = segments.findIndex(hasGlob);
  if (first < 0) return isFile(pattern) ? [pattern] : [];
  const baseParts = segments.slice(0, first).filter((s, i) => s !== "" || i > 0);
  const base = absolute ? `/${baseParts.join("/")}` : baseParts.join("/");
  const out: string[] = [];
  const join = (dir: string, name: string) => (dir === "" ? name : path.join(dir, name));
  const walk = (dir: string, rest: string[]): void => {
    if (rest.length === 0) {
      if (isFile(dir)) out.push(dir);
      return;
    }
    const [seg, ...tail] = rest;
    const here = dir === "" ? "." : dir;
    if (seg === "**" && tail.length === 0) {
      out.push(...imagesInDir(here, listing));
    } else if (seg === "**") {
      walk(dir, tail);
      for (const e of entries(here)) {
        if (!e.name.startsWith(".") && e.isDirectory()) walk(join(dir, e.name), rest);
      }
    } else if (hasGlob(seg)) {
      const re = segmentRegExp(seg);
      for (const e of entries(here)) {
        if (e.name.startsWith(".") && !seg.startsWith(".")) continue;
        if (re.test(e.name)) walk(join(dir, e.name), tail);
      }
    } else {
      walk(join(dir, seg), tail);
    }
  };
  walk(base, segments.slice(first));
  return [...new Set(out)].filter(isImagePath).sort();
}

export interface InputError {
  input: string;
  message: string;
}

export interface ExpandedInputs {
  files: string[];
  /** Arguments that named nothing: each becomes an error line, and the exit code is 1. */
  errors: InputError[];
}

export function expandInputs(args: string[]): ExpandedInputs {
  // One walk for every argument: each real folder and file is listed once.
  const walk = new ImageWalk();
  const files: string[] = [];
  const errors: InputError[] = [];
  for (const arg of args) {
    if (isDir(arg)) {
      const found = imagesInDir(arg, walk);
      if (found.length === 0) errors.push({ input: arg, message: `${arg}: no image files in this folder` });
      files.push(...found);
    } else if (fs.existsSync(arg) || !hasGlob(arg)) {
      // A named file is tried as it is: a missing or unreadable one fails when it is decoded.
      files.push(arg);
    } else {
      const found = glob(arg, walk);
      if (found.length === 0) errors.push({ input: arg, message: `${arg}: matched no image files` });
      files.push(...found);
    }
  }
  // One file reached by two arguments under different paths (a pattern through a folder link): answered once.
  const once = new ImageWalk();
  return { files: [...new Set(files)].filter((f) => once.claim(f)), errors };
}
