/** The config API the rest of the project uses (DESIGN.md "Config"; CONTRACTS.md). */
export { type LoadOptions, loadConfig, resolveConfig } from "./load.js";
export * from "./schema.js";
export { stringifyConfig } from "./stringify.js";
