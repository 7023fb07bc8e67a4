import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** package.json of this project, found upward from this file (src/ under tsx, dist/src/ when built). */
function readPackageJson(): { name: string; version: string; description: string } {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
}

const pkg = readPackageJson();
/** The framework's version, for `vit --version`, `vit info` and checkpoint metadata. */
export const VERSION: string = pkg.version;
export const DESCRIPTION: string = pkg.description;
