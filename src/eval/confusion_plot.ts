/**
 * confusion.png: the confusion matrix as a heatmap with class names. Colour is the fraction of
 * each true class (row-normalised, so rare classes read as well as common ones); counts are
 * written in the cells while they fit. Cells shrink and the column labels turn vertical as the
 * class count grows, so 100 classes stay legible.
 */
import { blues, contrastText, rgbHex } from "../plot/colormap.js";
import { colorBar, rect, renderSvgToPng, svgDocument, text, textWidth, truncate } from "../plot/svg.js";

export interface ConfusionPlotOptions {
  title?: string;
  /** Longest class name shown before it is cut with an ellipsis. */
  maxLabelChars?: number;
}

export interface ConfusionLayout {
  /** Cell side in pixels: 48 for a few classes, down to 12 at 100 classes and beyond. */
  cell: number;
  font: number;
  labels: string[];
  labelWidth: number;
  /** Column labels are turned vertical when they are wider than a cell. */
  verticalX: boolean;
  /** Top-left corner of the matrix. */
  left: number;
  top: number;
  xLabelHeight: number;
  width: number;
  height: number;
}

const TITLE_SIZE = 15;

export function confusionLayout(classes: string[], opts: ConfusionPlotOptions = {}): ConfusionLayout {
  const k = classes.length;
  const cell = Math.max(12, Math.min(48, Math.round(1200 / k)));
  const font = Math.max(9, Math.min(13, Math.round(cell * 0.8)));
  const labels = classes.map((c) => truncate(c, opts.maxLabelChars ?? 28));
  const labelWidth = Math.max(...labels.map((l) => textWidth(l, font)));
  const verticalX = labelWidth > cell - 4;
  const left = Math.round(16 + font + 8 + labelWidth + 6); // axis title, labels, gap
  const top = 16 + TITLE_SIZE + 12;
  const matrix = cell * k;
  const xLabelHeight = verticalX ? labelWidth + 8 : font + 8;
  return {
    cell,
    font,
    labels,
    labelWidth,
    verticalX,
    left,
    top,
    xLabelHeight,
    width: Math.ceil(left + matrix + 24 + 24 + 14 + 56 + font), // matrix, gap, colour bar and its labels
    height: Math.ceil(top + matrix + xLabelHeight + font + 20),
  };
}

export function confusionSvg(classes: string[], cm: number[][], opts: ConfusionPlotOptions = {}): string {
  const k = classes.length;
  if (cm.length !== k || cm.some((row) => row.length !== k)) {
    throw new Error(`confusionSvg: matrix is not ${k}x${k} for ${k} class names`);
  }
  const { cell, font, labels, verticalX, left, top, xLabelHeight, width, height } = confusionLayout(
    classes,
    opts,
  );
  const matrix = cell * k;
  const barX = left + matrix + 24;
  const titleSize = TITLE_SIZE;

  const body: string[] = [];
  if (opts.title)
    body.push(
      text(left + matrix / 2, 16 + titleSize / 2, opts.title, {
        size: titleSize,
        anchor: "middle",
        weight: "bold",
        baseline: "middle",
      }),
    );

  const rowSums = cm.map((row) => row.reduce((a, b) => a + b, 0));
  const showCounts = cell >= 24;
  // Empty cells are the background: 10,000 cells at 100 classes are mostly empty.
  body.push(rect(left, top, matrix, matrix, rgbHex(blues(0))));
  for (let t = 0; t < k; t++) {
    for (let p = 0; p < k; p++) {
      if (cm[t][p] === 0) continue;
      const frac = cm[t][p] / rowSums[t];
      const colour = blues(frac);
      const x = left + p * cell;
      const y = top + t * cell;
      body.push(rect(x, y, cell, cell, rgbHex(colour)));
      const count = String(cm[t][p]);
      if (showCounts && textWidth(count, font) <= cell - 2) {
        body.push(
          text(x + cell / 2, y + cell / 2, count, {
            size: font,
            anchor: "middle",
            baseline: "middle",
            fill: contrastText(colour),
          }),
        );
      }
    }
  }
  // Grid lines keep rows and columns traceable when most cells are empty (white).
  const lines: string[] = [];
  for (let i = 0; i <= k; i++) {
    const o = i * cell;
    lines.push(`M${left + o} ${top}V${top + matrix}`, `M${left} ${top + o}H${left + matrix}`);
  }
  body.push(
    `<path d="${lines.join("")}" stroke="#d0d0d0" stroke-width="${k > 50 ? 0.3 : 0.6}" fill="none"/>`,
  );
  body.push(rect(left, top, matrix, matrix, "none", 'stroke="#444444" stroke-width="1"'));

  for (let i = 0; i < k; i++) {
    const c = i * cell + cell / 2;
    body.push(text(left - 6, top + c, labels[i], { size: font, anchor: "end", baseline: "middle" }));
    body.push(
      verticalX
        ? text(left + c + font * 0.35, top + matrix + 6, labels[i], {
            size: font,
            anchor: "end",
            rotate: -90,
          })
        : text(left + c, top + matrix + 6, labels[i], { size: font, anchor: "middle", baseline: "hanging" }),
    );
  }
  body.push(
    text(left + matrix / 2, top + matrix + xLabelHeight + 10, "predicted class", {
      size: font + 1,
      anchor: "middle",
      baseline: "hanging",
    }),
  );
  body.push(
    text(16 + font / 2, top + matrix / 2, "true class", {
      size: font + 1,
      anchor: "middle",
      baseline: "middle",
      rotate: -90,
    }),
  );
  body.push(
    ...colorBar({
      x: barX,
      y: top,
      width: 14,
      height: Math.min(matrix, 400),
      cmap: blues,
      min: 0,
      max: 1,
      label: "fraction of true class",
      fontSize: Math.min(font, 11),
    }),
  );
  return svgDocument(width, height, body);
}

export async function writeConfusionPng(
  path: string,
  classes: string[],
  cm: number[][],
  opts: ConfusionPlotOptions = {},
): Promise<void> {
  await renderSvgToPng(confusionSvg(classes, cm, opts), path);
}
