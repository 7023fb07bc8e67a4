/**
 * A CSV manifest: a header naming the columns `path` and `label` (in either order), then one row
 * per image. Paths are relative to the CSV's folder (or absolute); labels are class names.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DataError, printable } from "../errors.js";
import { classIndex, type Dataset, describeClasses, type OpenOptions, type Sample } from "./dataset.js";
import { ImageWalk } from "./image_files.js";

const COLUMNS = ["path", "label"] as const;

/** RFC 4180 records with their 1-based line numbers; quoted fields may hold commas and newlines. */
export function parseCsv(text: string): { line: number; fields: string[] }[] {
  const records: { line: number; fields: string[] }[] = [];
  let fields: string[] = [];
  let field = "";
  let quoted = false;
  let line = 1;
  let start = 1;
  const endRecord = () => {
    fields.push(field);
    if (fields.length > 1 || fields[0].trim() !== "") records.push({ line: start, fields });
    fields = [];
    field = "";
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else {
        if (ch === "\n") line++;
        field += ch;
      }
    } else if (ch === '"' && field === "") quoted = true;
    else if (ch === ",") {
      fields.push(field);
      field = "";
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      endRecord();
      line++;
      start = line;
    } else field += ch;
  }
  if (field !== "" || fields.length > 0) endRecord();
  return records;
}

export function readCsvManifest(file: string, opts: OpenOptions = {}): Dataset {
  const text = fs.readFileSync(file, "utf8").replace(/^\uFEFF/, "");
  const [header, ...rows] = parseCsv(text);
  if (!header) throw new DataError(`${file}: the manifest is empty (expected a header "path,label")`);
  const columns = header.fields.map((f) => f.trim());
  for (const c of columns) {
    if (!(COLUMNS as readonly string[]).includes(c)) {
      throw new DataError(
        `${file}:${header.line}: unknown column ${JSON.stringify(c)} (expected the columns path,label)`,
      );
    }
  }
  for (const c of COLUMNS) {
    if (!columns.includes(c)) throw new DataError(`${file}:${header.line}: missing column "${c}"`);
  }
  if (rows.length === 0) throw new DataError(`${file}: the manifest has a header but no rows`);
  const pathCol = columns.indexOf("path");
  const labelCol = columns.indexOf("label");
  const records = rows.map(({ line, fields }) => {
    if (fields.length !== columns.length) {
      throw new DataError(`${file}:${line}: expected ${columns.length} fields, got ${fields.length}`);
    }
    return { line, file: fields[pathCol].trim(), label: fields[labelCol].trim() };
  });
  const classes = opts.classes ?? [...new Set(records.map((r) => r.label))].sort((a, b) => (a < b ? -1 : 1));
  const index = classIndex(classes);
  const dir = path.dirname(file);
  // A file listed twice (or reachable by two paths) is kept once, so it cannot land in train and val both.
  const walk = opts.walk ?? new ImageWalk();
  const samples: Sample[] = records.flatMap((r) => {
    const label = index.get(r.label);
    if (label === undefined) {
      throw new DataError(
        `${file}:${r.line}: label ${JSON.stringify(r.label)} is not one of the known classes (${describeClasses(classes)})`,
      );
    }
    if (r.file === "") throw new DataError(`${file}:${r.line}: empty path`);
    const p = path.resolve(dir, r.file);
    if (!fs.existsSync(p)) throw new DataError(`${file}:${r.line}: no such file ${printable(r.file)}`);
    return walk.claim(p) ? [{ path: p, label }] : [];
  });
  return { source: file, classes, samples };
}
