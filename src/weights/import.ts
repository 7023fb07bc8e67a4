/**
 * `vit import`: pretrained weights (src/model/pretrained.ts reads and fits them) written as a
 * checkpoint of this framework, with the resolved config and class names in its metadata, by the
 * trainer's own writer. Converts on the host: re-initialized heads (and with allowPartial, missing
 * weights) get exactly the values `createModel` would draw with the config's seed, so no tfjs
 * model is allocated.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type Config, loadConfig, resolveConfig } from "../config/index.js";
import { UsageError } from "../errors.js";
import { initialValues } from "../model/init.js";
import { VisionTransformer } from "../model/vision_transformer.js";
import type { TensorData } from "../tensor.js";
import { writeWeights } from "./checkpoint.js";
import { readLabels } from "./model_source.js";
import {
  adaptStateDict,
  archFromStateDict,
  configFromWeights,
  type PretrainedReport,
  readPretrained,
} from "./pretrained.js";

export interface ImportOptions {
  out: string;
  /** A preset, or a config file, describing the model; neither: told by the weights. */
  model?: string;
  config?: string;
  numClasses?: number;
  imgSize?: number;
  /** Class names, one per line. */
  labels?: string;
  allowPartial?: boolean;
  /** Notes and warnings as they happen (default: stderr). */
  log?: (line: string) => void;
}

export interface ImportResult {
  config: Config;
  classes: string[];
  report: PretrainedReport;
  /** One line saying what was written. */
  summary: string;
}

export function importWeights(file: string, o: ImportOptions): ImportResult {
  if (o.model && o.config) throw new UsageError("give --model PRESET or --config FILE, not both");
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const weights = readPretrained(file);
  const set: string[] = [];
  if (o.imgSize !== undefined) set.push(`model.img_size=${o.imgSize}`);
  if (o.numClasses !== undefined) set.push(`model.num_classes=${o.numClasses}`);
  let config: Config;
  if (o.config) config = loadConfig(o.config, { set });
  else if (o.model) config = resolveConfig({ model: { preset: o.model } }, { source: "--model", set });
  else {
    const inferred = configFromWeights(weights);
    for (const note of inferred.notes) log(`note: ${note}`);
    config = resolveConfig({ model: inferred.model, data: inferred.data }, { source: file, set });
  }
  const numClasses = config.model.num_classes ?? archFromStateDict(weights.stateDict).num_classes ?? 0;
  if (numClasses === 0) {
    throw new UsageError(`${file} has no classifier (head): give --num-classes K for the new one`);
  }
  const m = { ...config.model, num_classes: numClasses };
  const model = new VisionTransformer(m);
  const { stateDict, report } = adaptStateDict(weights, model, { allowPartial: o.allowPartial, log });
  const out = new Map<string, TensorData>();
  for (const [name, spec] of model.namedParamSpecs()) {
    out.set(
      name,
      stateDict.get(name) ?? {
        shape: spec.shape,
        data: initialValues(name, spec, m.weight_init, config.train.seed),
      },
    );
  }
  const classes = o.labels
    ? readLabels(o.labels)
    : (report.classNames ?? Array.from({ length: numClasses }, (_, i) => String(i)));
  if (classes.length !== numClasses) {
    throw new UsageError(`--labels ${o.labels}: ${classes.length} class names for ${numClasses} classes`);
  }
  const stored: Config = { ...config, model: m };
  fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  writeWeights(o.out, out, {
    config: stored,
    classes,
    epoch: 0,
    step: 0,
    extra: { imported_from: path.basename(file) },
  });
  const kind = m.distilled ? "DeiT (distilled)" : "ViT";
  const names = { timm: "timm names", hf: "Hugging Face names", npz: "Google .npz" }[report.format];
  const summary =
    `imported ${file} (${names}) -> ${o.out}: ${kind} embed_dim ${m.embed_dim}, depth ${m.depth}, ` +
    `num_heads ${m.num_heads}, patch ${m.patch_size}, ${m.img_size} px, ${numClasses} classes`;
  return { config: stored, classes, report, summary };
}
