/** Deep merge of config layers (extends chain, presets, --set) and path look-ups into raw config values. */

export type Path = readonly (string | number)[];

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * `over` wins: mappings merge key by key, everything else (scalars, lists, null) replaces, so a child
 * can reset a parent's section with `distill: null` or shorten a list.
 */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    out[key] = key in base ? deepMerge(base[key], value) : value;
  }
  return out;
}

/** The value at `path`, or undefined when some step of it is missing. */
export function getPath(value: unknown, path: Path): unknown {
  let cur = value;
  for (const key of path) {
    if (cur === null || typeof cur !== "object" || !Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string | number, unknown>)[key];
  }
  return cur;
}

/** True when `path` is spelled out in `value` (even with a null or undefined value). */
export function hasPath(value: unknown, path: Path): boolean {
  if (path.length === 0) return true;
  const parent = getPath(value, path.slice(0, -1));
  return parent !== null && typeof parent === "object" && Object.hasOwn(parent, path[path.length - 1]);
}

/** `["train", "optimizer", "lr"]` -> "train.optimizer.lr"; list indices as `data.mean[1]`. */
export function pathToString(path: Path): string {
  let out = "";
  for (const key of path) out += typeof key === "number" ? `[${key}]` : out ? `.${key}` : key;
  return out;
}

/** One source of config values, in increasing priority: extends chain (parents first), then --set. */
export interface Layer {
  /** What error messages name: a file path, or `--set a.b=c`. */
  source: string;
  value: Record<string, unknown>;
}
