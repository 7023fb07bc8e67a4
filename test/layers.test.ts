/**
 * The layer order of docs/design.md ("Layers"), read from the code: every relative import in cli/
 * and src/ goes to a lower rank, or stays inside its own folder. A new back arrow fails here with
 * the file, the import and both ranks.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { ROOT } from "./support.js";

/** Rank of each folder, top (0) to bottom; files directly in src/ are the base. */
const RANKS: Record<string, number> = {
  cli: 0,
  "src/train": 1,
  "src/serve": 1,
  "src/scaleout": 1,
  "src/eval": 2,
  "src/attention": 2,
  "src/predict": 3,
  "src/weights": 4,
  "src/engines": 5,
  "src/model": 6,
  "src/data": 6,
  "src/plot": 6,
  "src/metrics": 6,
  "src/config": 7,
  "src/io": 7,
  src: 8,
};

/** The folder a file is ranked by: cli, src/<folder>, or src for the base files. */
function unitOf(root: string, file: string): string {
  const parts = path.relative(root, file).split(path.sep);
  if (parts[0] === "cli") return "cli";
  return parts.length > 2 ? `src/${parts[1]}` : "src";
}

function sourceFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts"))
    .map((e) => path.join(e.parentPath, e.name));
}

/** Relative specifiers of static and dynamic imports and re-exports. */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, "utf8");
  return [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) => m[1]);
}

/** Every import in `root`'s cli/ and src/ that does not point down, as `file -> import (ranks)`. */
function backArrows(root: string): string[] {
  const found: string[] = [];
  for (const file of [...sourceFiles(path.join(root, "cli")), ...sourceFiles(path.join(root, "src"))]) {
    const name = path.relative(root, file);
    const from = unitOf(root, file);
    for (const spec of importsOf(file)) {
      const to = unitOf(root, path.resolve(path.dirname(file), spec));
      assert.ok(from in RANKS, `${name}: folder ${from} has no rank in the layer table`);
      assert.ok(to in RANKS, `${name} imports ${spec}: folder ${to} has no rank`);
      if (from !== to && RANKS[to] <= RANKS[from]) {
        found.push(`${name} -> ${spec} (${from}, rank ${RANKS[from]} -> ${to}, rank ${RANKS[to]})`);
      }
    }
  }
  return found;
}

test("every import in cli/ and src/ points down the layer order", () => {
  assert.deepEqual(backArrows(ROOT), []);
});

test("a back arrow, a same-rank arrow and a dynamic import upward are each caught", () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "vit-layers-"));
  const write = (file: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), text);
  };
  write("cli/index.ts", 'import { train } from "../src/train/loop.js";\n');
  write("src/train/loop.ts", 'import { Rng } from "../random.js";\nimport { x } from "./step.js";\n');
  write("src/model/init.ts", 'import { checkpoint } from "../weights/checkpoint.js";\n');
  write("src/data/split.ts", 'import type { Rng } from "../model/init.js";\n');
  write("src/io/npz.ts", 'const m = await import("../train/loop.js");\n');
  try {
    assert.deepEqual(backArrows(root).sort(), [
      "src/data/split.ts -> ../model/init.js (src/data, rank 6 -> src/model, rank 6)",
      "src/io/npz.ts -> ../train/loop.js (src/io, rank 7 -> src/train, rank 1)",
      "src/model/init.ts -> ../weights/checkpoint.js (src/model, rank 6 -> src/weights, rank 4)",
    ]);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
