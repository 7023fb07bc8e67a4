/**
 * What `vit eval` prints: the stable JSON shape of docs/design.md "CLI contract" ("top1", "top5", "loss",
 * "images", "per_class", plus extra keys) and the human report (per-class table, confusion
 * matrix as text for up to 20 classes, most confused pairs).
 */

import {
  type ClassMetrics,
  type ConfusedPair,
  mostConfused,
  type Summary,
} from "../metrics/classification.js";
import { alignTable } from "../plot/table.js";

/** Above this many classes the confusion matrix is only drawn (confusion.png), not printed. */
export const MAX_TEXT_CONFUSION_CLASSES = 20;

/** A distilled model's heads, each scored on its own (DeiT: the prediction is their mean). */
export interface HeadSummaries {
  head: Summary;
  head_dist: Summary;
  mean: Summary;
}

export interface EvalResult {
  classes: string[];
  /** The model's prediction (for a distilled model: the mean of both heads). */
  summary: Summary;
  heads?: HeadSummaries;
  /** Where the numbers came from; copied into the JSON as they are. */
  source?: { checkpoint?: string; data?: string; ema?: boolean; confusion_png?: string };
}

/** Six decimals: exact for any realistic image count, and no 0.30000000000000004 noise. */
function r6(x: number): number | null {
  return Number.isFinite(x) ? Math.round(x * 1e6) / 1e6 : null;
}

function metricsJson(m: ClassMetrics) {
  return { precision: r6(m.precision), recall: r6(m.recall), f1: r6(m.f1), support: m.support };
}

function headJson(s: Summary) {
  return { top1: r6(s.top1), top5: r6(s.top5), loss: r6(s.loss), images: s.images, macro_f1: r6(s.macro.f1) };
}

export function evalJson(r: EvalResult, confusedLimit = 10) {
  const s = r.summary;
  return {
    top1: r6(s.top1),
    top5: r6(s.top5),
    loss: r6(s.loss),
    images: s.images,
    per_class: Object.fromEntries(r.classes.map((name, c) => [name, metricsJson(s.perClass[c])])),
    macro_avg: metricsJson(s.macro),
    weighted_avg: metricsJson(s.weighted),
    most_confused: mostConfused(s.confusion, confusedLimit).map((p) => ({
      true: r.classes[p.true],
      pred: r.classes[p.pred],
      count: p.count,
      fraction: r6(p.fraction),
    })),
    classes: r.classes,
    confusion: s.confusion,
    ...(r.heads
      ? {
          heads: {
            head: headJson(r.heads.head),
            head_dist: headJson(r.heads.head_dist),
            mean: headJson(r.heads.mean),
          },
        }
      : {}),
    ...r.source,
  };
}

function pct(x: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(2)}%` : "n/a";
}

function fixed(x: number, digits: number): string {
  return Number.isFinite(x) ? x.toFixed(digits) : "n/a";
}

export function headline(s: Summary): string {
  return `images ${s.images}  top-1 ${pct(s.top1)}  top-5 ${pct(s.top5)}  loss ${fixed(s.loss, 4)}`;
}

/** sklearn's classification_report layout (3 decimals). */
export function perClassTable(classes: string[], s: Summary): string {
  const row = (name: string, m: ClassMetrics) => [
    name,
    m.precision.toFixed(3),
    m.recall.toFixed(3),
    m.f1.toFixed(3),
    String(m.support),
  ];
  return alignTable([
    ["class", "precision", "recall", "f1-score", "support"],
    ...classes.map((name, c) => row(name, s.perClass[c])),
    ["", "", "", "", ""],
    row("macro avg", s.macro),
    row("weighted avg", s.weighted),
  ]);
}

/**
 * The confusion matrix with rows "index name" (true class) and columns by index (predicted),
 * so columns stay narrow whatever the class names are.
 */
export function confusionTable(classes: string[], cm: number[][]): string {
  return alignTable(
    [
      ["true \\ pred", ...classes.map((_, c) => String(c))],
      ...cm.map((row, t) => [`${t} ${classes[t]}`, ...row.map(String)]),
    ],
    1,
  );
}

export function confusedPairsText(classes: string[], pairs: ConfusedPair[]): string {
  if (pairs.length === 0) return "no confusions";
  const table = alignTable(
    pairs.map((p) => [`${classes[p.true]} -> ${classes[p.pred]}`, String(p.count)]),
  ).split("\n");
  return table
    .map((line, i) => `${line}  (${(pairs[i].fraction * 100).toFixed(1)}% of ${classes[pairs[i].true]})`)
    .join("\n");
}

export function formatEvalText(r: EvalResult, confusedLimit = 10): string {
  const s = r.summary;
  const parts = [headline(s)];
  if (r.heads) {
    parts.push(
      alignTable([
        ["distilled", "top-1", "top-5", "loss"],
        ...(["head", "head_dist", "mean"] as const).map((k) => [
          k === "mean" ? "mean (prediction)" : k,
          pct(r.heads![k].top1),
          pct(r.heads![k].top5),
          fixed(r.heads![k].loss, 4),
        ]),
      ]),
    );
  }
  parts.push(perClassTable(r.classes, s));
  if (r.classes.length <= MAX_TEXT_CONFUSION_CLASSES) {
    parts.push(
      `confusion matrix (rows: true class, columns: predicted class)\n${confusionTable(r.classes, s.confusion)}`,
    );
  } else {
    parts.push(
      `confusion matrix: ${r.classes.length} classes, drawn in ${r.source?.confusion_png ?? "confusion.png"}`,
    );
  }
  parts.push(
    `most confused (true -> predicted)\n${confusedPairsText(r.classes, mostConfused(s.confusion, confusedLimit))}`,
  );
  if (r.source?.confusion_png && r.classes.length <= MAX_TEXT_CONFUSION_CLASSES) {
    parts.push(`confusion heatmap: ${r.source.confusion_png}`);
  }
  return `${parts.join("\n\n")}\n`;
}
