/**
 * zod issues -> the one-line-per-problem error format:
 * `configs/x.yaml: train.optimizer.lr: expected a positive number, got "fast"`.
 * The expectation is read off the schema itself, so messages stay true when a range changes.
 */
import YAML from "yaml";
import type { z } from "zod";
import { getPath, type Path, pathToString } from "./merge.js";
import { suggestion } from "./suggest.js";

// zod's internal definitions, read only to describe what a key accepts.
type Def = {
  type: string;
  innerType?: Schema;
  shape?: Record<string, Schema>;
  items?: Schema[];
  element?: Schema;
  options?: Schema[];
  entries?: Record<string, string | number>;
  values?: unknown[];
  checks?: { _zod: { def: Record<string, unknown> } }[];
};
type Schema = { _zod: { def: Def } };

const WRAPPERS = new Set(["default", "prefault", "optional", "nonoptional", "readonly", "catch"]);

function unwrap(schema: Schema, alsoNullable: boolean): Schema {
  let s = schema;
  while (WRAPPERS.has(s._zod.def.type) || (alsoNullable && s._zod.def.type === "nullable")) {
    s = s._zod.def.innerType!;
  }
  return s;
}

/** The schema of the value at `path`, or undefined if the path leaves the schema. */
export function schemaAt(root: z.ZodType, path: Path): Schema | undefined {
  let s: Schema | undefined = root as unknown as Schema;
  for (const key of path) {
    const def: Def = unwrap(s, true)._zod.def;
    if (def.type === "object" && typeof key === "string") s = def.shape?.[key];
    else if (def.type === "tuple" && typeof key === "number") s = def.items?.[key];
    else if (def.type === "array" && typeof key === "number") s = def.element;
    else return undefined;
    if (s === undefined) return undefined;
  }
  return s;
}

/** The keys a mapping at `path` accepts (empty if it is not a mapping). */
export function keysAt(root: z.ZodType, path: Path): string[] {
  const s = schemaAt(root, path);
  const def = s && unwrap(s, true)._zod.def;
  return def?.type === "object" ? Object.keys(def.shape!) : [];
}

function checks(def: Def): Record<string, unknown>[] {
  return (def.checks ?? []).map((c) => c._zod.def);
}

function describeNumber(def: Def): string {
  const all = checks(def);
  const int = all.some((c) => c.check === "number_format" && String(c.format).includes("int"));
  const noun = int ? "integer" : "number";
  const lo = all.find((c) => c.check === "greater_than") as { value: number; inclusive: boolean } | undefined;
  const hi = all.find((c) => c.check === "less_than") as { value: number; inclusive: boolean } | undefined;
  if (lo && hi) {
    return `${int ? "an integer" : "a number"} in ${lo.inclusive ? "[" : "("}${lo.value}, ${hi.value}${hi.inclusive ? "]" : ")"}`;
  }
  if (lo && lo.value === 0) return `a ${lo.inclusive ? "non-negative" : "positive"} ${noun}`;
  if (lo) return `${int ? "an integer" : "a number"} ${lo.inclusive ? ">=" : ">"} ${lo.value}`;
  if (hi) return `${int ? "an integer" : "a number"} ${hi.inclusive ? "<=" : "<"} ${hi.value}`;
  return int ? "an integer" : "a number";
}

function describeList(def: Def): string {
  if (def.type === "tuple") {
    const items = def.items!.map((s) => describe(s));
    const same = items.every((d) => d === items[0]);
    return same
      ? `a list of ${items.length} values, each ${items[0]}`
      : `a list [${items.map((d) => `<${d}>`).join(", ")}]`;
  }
  const all = checks(def);
  const min = all.find((c) => c.check === "min_length")?.minimum as number | undefined;
  const max = all.find((c) => c.check === "max_length")?.maximum as number | undefined;
  const count = min !== undefined && max !== undefined ? `${min} to ${max} ` : min ? `at least ${min} ` : "";
  return `a list of ${count}values, each ${describe(def.element!)}`;
}

/** What a schema accepts, in words: "a positive integer", "token or avg", "a mapping or null". */
export function describe(schema: Schema): string {
  const s = unwrap(schema, false);
  const def = s._zod.def;
  switch (def.type) {
    case "nullable":
      return `${describe(def.innerType!)} or null`;
    case "number":
      return describeNumber(def);
    case "boolean":
      return "true or false";
    case "string":
      return checks(def).some((c) => c.check === "min_length") ? "a non-empty string" : "a string";
    case "enum":
      return orList(Object.values(def.entries!).map(String));
    case "literal":
      return orList(def.values!.map((v) => formatValue(v)));
    case "union":
      return orList(def.options!.map((o) => describe(o)));
    case "tuple":
    case "array":
      return describeList(def);
    case "object":
      return "a mapping of keys";
    default:
      return def.type;
  }
}

function orList(items: string[]): string {
  return items.length <= 2 ? items.join(" or ") : `one of ${items.join(", ")}`;
}

/** A config value as the user would write it: strings quoted, lists and mappings in YAML flow style. */
export function formatValue(v: unknown): string {
  if (v === undefined) return "nothing";
  const text =
    typeof v === "string"
      ? JSON.stringify(v)
      : // lineWidth 0: yaml folds long flow collections onto several lines; a message is one line.
        YAML.stringify(v, { collectionStyle: "flow", flowCollectionPadding: false, lineWidth: 0 })
          .trim()
          .replace(/\s*\n\s*/g, " ");
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export interface IssueContext {
  schema: z.ZodType;
  /** The object that was validated, to quote what the user wrote. */
  input: unknown;
  /**
   * The file (or --set) responsible for the value at a path; `exact` for checks across keys, where
   * the section's last writer may have nothing to do with the key.
   */
  sourceOf: (path: Path, exact: boolean) => string;
  /** Extra keys allowed at the top level that the schema does not list (e.g. extends). */
  rootKeys?: readonly string[];
}

/** One line per problem, each starting with the file (or --set) and the key path at fault. */
export function formatIssues(issues: readonly z.core.$ZodIssue[], ctx: IssueContext): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      const at = issue.path as Path;
      const known = [...keysAt(ctx.schema, at), ...(at.length ? [] : (ctx.rootKeys ?? []))];
      for (const key of issue.keys) {
        const path = [...at, key];
        const hint = suggestion(key, known) || ` (known keys: ${known.join(", ")})`;
        lines.push(`${ctx.sourceOf(path, false)}: ${pathToString(path)}: unknown key${hint}`);
      }
      continue;
    }
    // Config keys are strings and list indices; zod types paths as PropertyKey for symbols.
    const path = issue.path as Path;
    const source = ctx.sourceOf(path, issue.code === "custom");
    lines.push(`${source}: ${pathToString(path) || "(top level)"}: ${explain(issue, path, ctx)}`);
  }
  return [...new Set(lines)];
}

function explain(issue: z.core.$ZodIssue, path: Path, ctx: IssueContext): string {
  const value = getPath(ctx.input, path);
  const schema = schemaAt(ctx.schema, path);
  if (issue.code === "custom") return issue.message;
  // A schema-given message ("expected a folder name ...") says more than "a string".
  if (issue.code === "invalid_format" && !issue.message.startsWith("Invalid")) {
    return `${issue.message}, got ${formatValue(value)}`;
  }
  if (!schema) return issue.message;
  if (value === undefined && issue.code === "invalid_type")
    return `required key missing: expected ${describe(schema)}`;
  let text = `expected ${describe(schema)}, got ${formatValue(value)}`;
  if (issue.code === "invalid_value" && typeof value === "string") {
    text += suggestion(value, issue.values.map(String));
  }
  return text;
}
