import YAML, { type ScalarTag } from "yaml";
import type { Config } from "./schema.js";

const FLOAT = "tag:yaml.org,2002:float";

/**
 * Small floats as `5.0e-4` rather than `0.0005` or `5e-4`: readable, and still a float to YAML 1.1
 * readers (PyYAML reads `5e-4` as a string).
 */
function scientific(tags: YAML.Tags): YAML.Tags {
  return tags.map((tag) => {
    if (typeof tag !== "object" || tag.tag !== FLOAT || tag.format) return tag;
    const plain = tag as ScalarTag;
    return {
      ...plain,
      stringify(item, ctx, onComment, onChompKeep) {
        const n = Number(item.value);
        if (n === 0 || !Number.isFinite(n) || Math.abs(n) >= 1e-3) {
          return plain.stringify!(item, ctx, onComment, onChompKeep);
        }
        const [mantissa, exp] = n.toExponential().split("e");
        return `${mantissa.includes(".") ? mantissa : `${mantissa}.0`}e${exp}`;
      },
    } satisfies ScalarTag;
  });
}

/** YAML of a resolved config (runs/<name>/config.yaml, `vit config print`); loads back to the same config. */
export function stringifyConfig(cfg: Config): string {
  const doc = new YAML.Document(cfg, { customTags: scientific });
  // Short lists of numbers read best on one line: `mean: [0.485, 0.456, 0.406]`.
  YAML.visit(doc, {
    Seq(_, node) {
      if (node.items.every((item) => YAML.isScalar(item))) node.flow = true;
    },
  });
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}
