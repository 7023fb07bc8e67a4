/** The config API the rest of the project uses (docs/design.md "Config"). */
export { type LoadOptions, loadConfig, resolveConfig } from "./load.js";
export * from "./schema.js";
export { stringifyConfig } from "./stringify.js";
