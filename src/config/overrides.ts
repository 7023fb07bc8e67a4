/** `--set a.b=c` command-line overrides: each becomes one config layer above the files. */
import YAML from "yaml";
import { ConfigError } from "../errors.js";
import type { Layer } from "./merge.js";

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The value is read as YAML, so `5` is a number, `true` a boolean, `null` null, `[0.5, 0.5]` a list
 * and `{decay: 0.999}` a mapping; anything else stays a string. It is validated with the files.
 */
export function parseSet(expr: string): Layer {
  const source = `--set ${expr}`;
  const eq = expr.indexOf("=");
  if (eq < 0) throw new ConfigError(`${source}: expected key.path=value, e.g. --set train.epochs=5`);
  const keys = expr.slice(0, eq).trim().split(".");
  const bad = keys.find((k) => !KEY.test(k));
  if (bad !== undefined) {
    throw new ConfigError(`${source}: "${expr.slice(0, eq)}" is not a key path like train.optimizer.lr`);
  }
  if (keys[0] === "extends") throw new ConfigError(`${source}: extends can only be given in a config file`);
  let value: unknown;
  try {
    value = YAML.parse(expr.slice(eq + 1), { prettyErrors: false });
  } catch (err) {
    throw new ConfigError(`${source}: cannot read the value: ${(err as Error).message.split("\n")[0]}`);
  }
  for (const key of keys.toReversed()) value = { [key]: value };
  return { source, value: value as Record<string, unknown> };
}
