/** The model API the rest of the project uses (docs/design.md "Layers"). */

export type { StateDict } from "../tensor.js";
export { initParameters, type WeightInit } from "./init.js";
export { dropPathRates } from "./layers/drop_path.js";
export type { ParamSpec } from "./module.js";
export { type ModelStats, modelStats } from "./stats.js";
export {
  createModel,
  type ForwardOptions,
  type ModelOutput,
  VisionTransformer,
  type VitConfig,
} from "./vision_transformer.js";
