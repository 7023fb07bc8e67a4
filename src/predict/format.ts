/**
 * What `vit predict` prints, one image at a time so results stream: `--json` (docs/design.md "CLI contract":
 * `[{"image": "a.jpg", "predictions": [{"label": "cat", "index": 3, "prob": 0.91}]}]`, most
 * probable first), `--csv` (one row per image), or an aligned table for a person.
 */
import { softmax, topk } from "../metrics/classification.js";

export interface Prediction {
  label: string;
  index: number;
  prob: number;
}

export interface PredictResult {
  image: string;
  /** Most probable first; empty when the image failed. */
  predictions: Prediction[];
  /** Why the image has no predictions (it could not be read or decoded). */
  error?: string;
}

export type PredictFormat = "json" | "csv" | "table";

/**
 * The top `k` classes of one row of logits, with softmax probabilities. `labels` names the
 * classes; without it (a bare timm weights file) the label is the class index as text.
 */
export function topPredictions(
  logits: ArrayLike<number>,
  k: number,
  labels?: readonly string[],
): Prediction[] {
  const probs = softmax(logits);
  return topk(probs, k).map((index) => ({
    label: labels?.[index] ?? String(index),
    index,
    prob: Math.round(probs[index] * 1e6) / 1e6,
  }));
}

/** RFC 4180: quote a field that holds a comma, quote or line break; double inner quotes. */
export function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export interface ResultWriter {
  /** Text before the first result (may be ""). */
  begin(): string;
  /** Text for one result, or "" when this format leaves failed images to the error line. */
  write(r: PredictResult): string;
  end(): string;
}

export interface WriterOptions {
  topk: number;
  /** Every image path that will be written (the table pads its first column to the longest). */
  images?: readonly string[];
  /** Every label that can appear (the table sizes its columns by the longest). */
  labels?: readonly string[];
}

function jsonWriter(): ResultWriter {
  let count = 0;
  return {
    begin: () => "[",
    write: (r) => `${count++ === 0 ? "\n" : ",\n"}  ${JSON.stringify(r)}`,
    end: () => (count === 0 ? "]\n" : "\n]\n"),
  };
}

function csvWriter(k: number): ResultWriter {
  const cols = ["image"];
  for (let i = 1; i <= k; i++) cols.push(`label_${i}`, `index_${i}`, `prob_${i}`);
  cols.push("error");
  return {
    begin: () => `${cols.join(",")}\n`,
    write: (r) => {
      const cells = [csvField(r.image)];
      for (let i = 0; i < k; i++) {
        const p = r.predictions[i];
        cells.push(p ? csvField(p.label) : "", p ? String(p.index) : "", p ? String(p.prob) : "");
      }
      cells.push(csvField(r.error ?? ""));
      return `${cells.join(",")}\n`;
    },
    end: () => "",
  };
}

function tableWriter(o: WriterOptions): ResultWriter {
  const imageWidth = Math.max("image".length, ...(o.images ?? []).map((s) => s.length));
  const labelWidth = Math.max(5, ...(o.labels ?? []).map((s) => s.length));
  const cellWidth = labelWidth + 8; // "label  99.99%"
  const cell = (p: Prediction) =>
    `${p.label.padEnd(labelWidth)} ${`${(p.prob * 100).toFixed(2)}%`.padStart(7)}`;
  return {
    begin: () => {
      const heads = Array.from({ length: o.topk }, (_, i) => `top-${i + 1}`.padEnd(cellWidth));
      return `${["image".padEnd(imageWidth), ...heads].join("  ").trimEnd()}\n`;
    },
    write: (r) =>
      r.error ? "" : `${[r.image.padEnd(imageWidth), ...r.predictions.map(cell)].join("  ").trimEnd()}\n`,
    end: () => "",
  };
}

export function createWriter(format: PredictFormat, o: WriterOptions): ResultWriter {
  if (format === "json") return jsonWriter();
  if (format === "csv") return csvWriter(o.topk);
  return tableWriter(o);
}
