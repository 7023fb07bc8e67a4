/**
 * Classification metrics on plain arrays, as timm's validate.py and sklearn compute them:
 * top-1/top-5 accuracy, mean cross-entropy, a confusion matrix (rows: true class, columns:
 * predicted class) and per-class precision/recall/F1/support with macro and weighted averages
 * (`classification_report(y_true, y_pred, zero_division=0)`).
 */

/** Running totals over an evaluation; fold batches in with `addBatch`, read with `summarize`. */
export interface Tally {
  numClasses: number;
  images: number;
  /** Images folded in with logits; top-5 and loss are over these. */
  scored: number;
  top1Correct: number;
  top5Correct: number;
  /** Sum of per-image cross-entropy (natural log), accumulated in float64. */
  lossSum: number;
  /** `confusion[t * numClasses + p]`: images of true class t predicted as p. */
  confusion: Float64Array;
}

export function emptyTally(numClasses: number): Tally {
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new Error(`emptyTally: numClasses must be a positive integer, got ${numClasses}`);
  }
  return {
    numClasses,
    images: 0,
    scored: 0,
    top1Correct: 0,
    top5Correct: 0,
    lossSum: 0,
    confusion: new Float64Array(numClasses * numClasses),
  };
}

/** Index of the largest value; the first one on ties (as numpy's argmax). */
export function argmax(row: ArrayLike<number>, start = 0, length = row.length - start): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (row[start + i] > row[start + best]) best = i;
  return best;
}

/**
 * Indices of the `k` largest values, largest first; ties keep the lower index first. An
 * insertion into a k-long list: O(K * k), cheaper than sorting 1000 logits for a top-5.
 */
export function topk(row: ArrayLike<number>, k: number, start = 0, length = row.length - start): number[] {
  const top: number[] = [];
  const m = Math.min(k, length);
  for (let i = 0; i < length; i++) {
    const v = row[start + i];
    if (top.length === m && !(v > row[start + top[m - 1]])) continue;
    let j = top.length === m ? m - 1 : top.length;
    while (j > 0 && v > row[start + top[j - 1]]) {
      top[j] = top[j - 1];
      j--;
    }
    top[j] = i;
  }
  return top;
}

/** Softmax of one row in float64 (max-subtracted, so large logits do not overflow). */
export function softmax(row: ArrayLike<number>, start = 0, length = row.length - start): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < length; i++) max = Math.max(max, row[start + i]);
  const out = new Float64Array(length);
  let sum = 0;
  for (let i = 0; i < length; i++) {
    out[i] = Math.exp(row[start + i] - max);
    sum += out[i];
  }
  for (let i = 0; i < length; i++) out[i] /= sum;
  return out;
}

/** -log softmax(row)[label], computed as logsumexp(row) - row[label]. */
export function crossEntropy(
  row: ArrayLike<number>,
  label: number,
  start = 0,
  length = row.length - start,
): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < length; i++) max = Math.max(max, row[start + i]);
  let sum = 0;
  for (let i = 0; i < length; i++) sum += Math.exp(row[start + i] - max);
  return max + Math.log(sum) - row[start + label];
}

function checkLabel(t: Tally, label: number, i: number): void {
  if (!Number.isInteger(label) || label < 0 || label >= t.numClasses) {
    throw new Error(`label ${label} of image ${i} is outside [0, ${t.numClasses})`);
  }
}

/**
 * Fold a batch of logits `[B, K]` (row-major) and labels `[B]` into `t`. Top-5 is top-min(5, K),
 * so a model with fewer than 5 classes scores top-5 = 1 as every class is in its top 5.
 */
export function addBatch(t: Tally, logits: ArrayLike<number>, labels: ArrayLike<number>): void {
  const k = t.numClasses;
  if (logits.length !== labels.length * k) {
    throw new Error(`addBatch: ${logits.length} logits for ${labels.length} labels and ${k} classes`);
  }
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i];
    checkLabel(t, label, i);
    const top = topk(logits, 5, i * k, k);
    t.confusion[label * k + top[0]] += 1;
    if (top[0] === label) t.top1Correct += 1;
    if (top.includes(label)) t.top5Correct += 1;
    t.lossSum += crossEntropy(logits, label, i * k, k);
    t.images += 1;
    t.scored += 1;
  }
}

/** Fold predicted class indices (no logits, so no loss or top-5) into `t`'s confusion matrix. */
export function addPredictions(t: Tally, predicted: ArrayLike<number>, labels: ArrayLike<number>): void {
  if (predicted.length !== labels.length) {
    throw new Error(`addPredictions: ${predicted.length} predictions for ${labels.length} labels`);
  }
  for (let i = 0; i < labels.length; i++) {
    checkLabel(t, labels[i], i);
    checkLabel(t, predicted[i], i);
    t.confusion[labels[i] * t.numClasses + predicted[i]] += 1;
    if (predicted[i] === labels[i]) t.top1Correct += 1;
    t.images += 1;
  }
}

export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface ConfusedPair {
  true: number;
  pred: number;
  count: number;
  /** count / support of the true class. */
  fraction: number;
}

export interface Summary {
  images: number;
  /** Fractions in [0, 1]; NaN for an empty evaluation (top-5 and loss: without logits). */
  top1: number;
  top5: number;
  loss: number;
  perClass: ClassMetrics[];
  macro: ClassMetrics;
  weighted: ClassMetrics;
  /** `confusion[true][pred]`. */
  confusion: number[][];
}

function ratio(a: number, b: number): number {
  return b === 0 ? 0 : a / b;
}

/** Per-class metrics from a confusion matrix `cm[true][pred]`; an undefined ratio is 0. */
export function classMetrics(cm: number[][]): ClassMetrics[] {
  const k = cm.length;
  return cm.map((row, c) => {
    const tp = row[c];
    const support = row.reduce((a, b) => a + b, 0);
    let predicted = 0;
    for (let r = 0; r < k; r++) predicted += cm[r][c];
    const precision = ratio(tp, predicted);
    const recall = ratio(tp, support);
    // 2tp / (2tp + fp + fn): sklearn's form, equal to 2PR/(P+R) and 0 when tp is 0.
    const f1 = ratio(2 * tp, predicted + support);
    return { precision, recall, f1, support };
  });
}

/**
 * Macro (unweighted mean) and weighted (by support) averages. As sklearn without a `labels`
 * argument, the macro mean is over the classes that occur in the labels or the predictions, so
 * an evaluation set that lacks a class is not penalised for it.
 */
export function averages(
  perClass: ClassMetrics[],
  cm: number[][],
): { macro: ClassMetrics; weighted: ClassMetrics } {
  const present = perClass.filter((m, c) => m.support > 0 || cm.some((row) => row[c] > 0));
  const total = perClass.reduce((a, m) => a + m.support, 0);
  const mean = (key: "precision" | "recall" | "f1") =>
    ratio(
      present.reduce((a, m) => a + m[key], 0),
      present.length,
    );
  const wmean = (key: "precision" | "recall" | "f1") =>
    ratio(
      perClass.reduce((a, m) => a + m[key] * m.support, 0),
      total,
    );
  return {
    macro: { precision: mean("precision"), recall: mean("recall"), f1: mean("f1"), support: total },
    weighted: { precision: wmean("precision"), recall: wmean("recall"), f1: wmean("f1"), support: total },
  };
}

export function confusionRows(t: Tally): number[][] {
  const k = t.numClasses;
  return Array.from({ length: k }, (_, r) => Array.from(t.confusion.subarray(r * k, (r + 1) * k)));
}

export function summarize(t: Tally): Summary {
  const confusion = confusionRows(t);
  const perClass = classMetrics(confusion);
  const n = t.images;
  return {
    images: n,
    top1: n === 0 ? Number.NaN : t.top1Correct / n,
    top5: t.scored === 0 ? Number.NaN : t.top5Correct / t.scored,
    loss: t.scored === 0 ? Number.NaN : t.lossSum / t.scored,
    perClass,
    ...averages(perClass, confusion),
    confusion,
  };
}

/** Off-diagonal cells by count, largest first (ties: lower true, then lower predicted index). */
export function mostConfused(cm: number[][], limit = 10): ConfusedPair[] {
  const pairs: ConfusedPair[] = [];
  cm.forEach((row, t) => {
    const support = row.reduce((a, b) => a + b, 0);
    row.forEach((count, p) => {
      if (p !== t && count > 0) pairs.push({ true: t, pred: p, count, fraction: count / support });
    });
  });
  pairs.sort((a, b) => b.count - a.count || a.true - b.true || a.pred - b.pred);
  return pairs.slice(0, limit);
}
