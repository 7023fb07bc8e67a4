/** `model.preset`: start from a registry entry; every key the user wrote wins over it. */
import { ConfigError } from "../errors.js";
import { isPlainObject, type Path } from "./merge.js";
import { findPreset, PRESETS } from "./presets.js";
import { suggestion } from "./suggest.js";

/**
 * The preset's architecture goes under the user's `model` keys, and its preprocessing (mean, std,
 * crop_pct, interpolation: what the weights were trained with) under the user's `data` keys.
 */
export function applyPreset(raw: Record<string, unknown>, sourceOf: (path: Path) => string) {
  const model = raw.model;
  if (!isPlainObject(model) || typeof model.preset !== "string") return raw;
  const preset = findPreset(model.preset);
  if (!preset) {
    const names = PRESETS.map((p) => p.name);
    const hint = suggestion(model.preset, names) || " (`vit models` lists them)";
    throw new ConfigError(
      `${sourceOf(["model", "preset"])}: model.preset: unknown preset "${model.preset}"${hint}`,
    );
  }
  const data = raw.data === undefined ? {} : raw.data;
  return {
    ...raw,
    model: { ...preset.model, ...model },
    data: isPlainObject(data) ? { ...preset.data, ...data } : data,
  };
}
