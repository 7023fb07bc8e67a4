/**
 * A config file -> a validated Config: YAML, then the `extends:` chain (parents first), then `--set`
 * overrides, then `model.preset`, then the zod schema. Every problem is a ConfigError whose lines
 * name the file (or --set) and key at fault.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { ConfigError, printable } from "../errors.js";
import { formatIssues, formatValue } from "./format.js";
import { deepMerge, hasPath, isPlainObject, type Layer, type Path } from "./merge.js";
import { parseSet } from "./overrides.js";
import { applyPreset } from "./preset.js";
import { type Config, ConfigSchema } from "./schema.js";

export interface LoadOptions {
  /** `a.b=c` overrides, applied in order above every file. */
  set?: readonly string[];
}

export function loadConfig(file: string, opts: LoadOptions = {}): Config {
  const abs = path.resolve(file);
  const source = displayPath(abs);
  if (!existsSync(abs)) throw new ConfigError(`${source}: no such file`);
  return resolveLayers(fileLayers(abs, []), opts.set ?? [], source);
}

/**
 * The same from an object already in memory (a config stored in a checkpoint or a run folder);
 * `source` is what error messages name. An `extends:` path is relative to the working directory.
 */
export function resolveConfig(raw: unknown, opts: LoadOptions & { source: string }): Config {
  return resolveLayers(objectLayers(raw ?? {}, opts.source, process.cwd(), []), opts.set ?? [], opts.source);
}

/** Paths in messages: relative to the working directory when under it, else absolute. */
function displayPath(abs: string): string {
  const rel = path.relative(process.cwd(), abs);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : abs;
}

function fileLayers(abs: string, stack: readonly string[]): Layer[] {
  const source = displayPath(abs);
  let text: string;
  try {
    text = readFileSync(abs, "utf8");
  } catch (err) {
    throw new ConfigError(`${source}: cannot read: ${(err as Error).message}`);
  }
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      const where = pos ? `${source}:${pos.line}:${pos.col}` : source;
      return `${where}: ${e.message.split(/ at line \d+|\n/)[0]}`;
    });
    throw new ConfigError(lines.join("\n"));
  }
  let value: unknown;
  try {
    value = doc.toJS();
  } catch (err) {
    // yaml refuses to expand an alias bomb ("billion laughs") and says why: a config error.
    throw new ConfigError(`${source}: ${(err as Error).message.split("\n")[0]}`);
  }
  return objectLayers(value ?? {}, source, path.dirname(abs), [...stack, abs]);
}

/** The layers of one config object: those of its `extends:` chain first, then its own. */
function objectLayers(raw: unknown, source: string, dir: string, stack: readonly string[]): Layer[] {
  if (!isPlainObject(raw)) {
    throw new ConfigError(`${source}: expected a mapping of config keys, got ${formatValue(raw)}`);
  }
  const { extends: parent, ...own } = raw;
  const layer = { source, value: withPresetShorthand(own) };
  if (parent === undefined || parent === null) return [layer];
  if (typeof parent !== "string" || parent === "") {
    throw new ConfigError(`${source}: extends: expected a path to a YAML file, got ${formatValue(parent)}`);
  }
  const target = path.resolve(dir, parent);
  if (stack.includes(target)) {
    const cycle = [...stack.slice(stack.indexOf(target)), target].map(displayPath).join(" -> ");
    throw new ConfigError(`${source}: extends: cycle ${cycle}`);
  }
  if (!existsSync(target)) {
    throw new ConfigError(
      `${source}: extends: no such file ${printable(parent)} (looked for ${printable(displayPath(target))})`,
    );
  }
  return [...fileLayers(target, stack), layer];
}

/** `model: vit_tiny_patch16_224` is short for `model: {preset: vit_tiny_patch16_224}`. */
function withPresetShorthand(value: Record<string, unknown>): Record<string, unknown> {
  return typeof value.model === "string" ? { ...value, model: { preset: value.model } } : value;
}

function resolveLayers(files: Layer[], set: readonly string[], entry: string): Config {
  const layers = [
    ...files,
    ...set.map((s) => parseSet(s)).map((l) => ({ ...l, value: withPresetShorthand(l.value) })),
  ];
  const writer = (p: Path) => layers.findLast((l) => hasPath(l.value, p))?.source;
  // The last layer that wrote the key (or, for a missing key, its section); else the entry file.
  const blame = (p: Path, exact = false) => {
    for (let n = p.length; n > (exact ? p.length - 1 : 0); n--) {
      const hit = writer(p.slice(0, n));
      if (hit) return hit;
    }
    return entry;
  };
  const merged = layers.reduce<Record<string, unknown>>(
    (acc, l) => deepMerge(acc, l.value) as typeof acc,
    {},
  );
  const raw = applyPreset(merged, blame);
  const result = ConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  const lines = formatIssues(result.error.issues, {
    schema: ConfigSchema,
    input: raw,
    sourceOf: blame,
    rootKeys: ["extends"],
  });
  throw new ConfigError(lines.join("\n"));
}
