/**
 * `model.pretrained` for timm. vit train loads a timm-named file into the config's model,
 * resampling pos_embed and re-initialising a head of another size; timm does the same with
 * `--pretrained --pretrained-path` (its checkpoint_filter_fn resamples; the head is always
 * dropped). A file that already fits the model exactly (a checkpoint of this framework, or its
 * `vit export --format timm`) loads strictly with `--initial-checkpoint`, head and all.
 */
import * as fs from "node:fs";
import { ConfigError } from "../errors.js";
import { isNpz } from "../io/npz.js";
import { readSafetensorsHeader } from "../io/safetensors.js";
import type { TimmArg } from "./mapping.js";

export interface PretrainedPlan {
  args: TimmArg[];
  note: string;
}

/** `shapes`: the parameter shapes of the model the config builds. */
export function planPretrained(file: string, shapes: ReadonlyMap<string, readonly number[]>): PretrainedPlan {
  const fineTune: PretrainedPlan = {
    args: [
      { flag: "--pretrained", values: [] },
      { flag: "--pretrained-path", values: [file] },
    ],
    note: "timm resamples pos_embed to the model's grid and re-initialises the head (always, with --pretrained-path)",
  };
  if (!fs.existsSync(file)) return { ...fineTune, note: `${fineTune.note}; not found here, so not checked` };
  const convert = `convert it first: vit import ${file} --out converted.safetensors, then --set model.pretrained=converted.safetensors`;
  if (isNpz(file))
    throw new ConfigError(`model.pretrained: ${file}: timm's train.py reads no .npz here; ${convert}`);
  const { tensors } = readSafetensorsHeader(file);
  if (!tensors.has("patch_embed.proj.weight")) {
    throw new ConfigError(`model.pretrained: ${file}: not timm's tensor names; ${convert}`);
  }
  const exact =
    tensors.size === shapes.size &&
    [...shapes].every(([key, shape]) => {
      const t = tensors.get(key);
      return t !== undefined && t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
    });
  if (!exact) return fineTune;
  return {
    args: [{ flag: "--initial-checkpoint", values: [file] }],
    note: "the file fits the model exactly: loaded strictly, head included",
  };
}
