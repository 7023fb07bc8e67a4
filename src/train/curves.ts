/**
 * curves.png: three panels drawn from metrics.jsonl (loss, accuracy, learning rate against the
 * epoch), as SVG rendered by sharp, so the picture is derived from the log and nothing else.
 */
import { renderSvgToPng, svgDocument, text, textWidth } from "../plot/svg.js";
import type { MetricsRecord } from "../weights/run_dir.js";

interface Series {
  label: string;
  color: string;
  points: Array<[x: number, y: number]>;
  /** Draw a dot at each point (few points, e.g. one per epoch). */
  dots?: boolean;
}

interface Panel {
  title: string;
  yLabel: string;
  series: Series[];
  format: (v: number) => string;
  /** Fixed y range, e.g. [0, 100] for accuracy. */
  yRange?: [number, number];
}

const PANEL_W = 380;
const PANEL_H = 300;
const MARGIN = { left: 64, right: 16, top: 36, bottom: 84 };
const COLORS = { train: "#1f77b4", val: "#d62728", top5: "#ff7f0e", ema: "#2ca02c", lr: "#9467bd" };

/** 1, 2 or 5 times a power of ten, about `count` steps across [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

function drawPanel(panel: Panel, ox: number, oy: number): string[] {
  const plotW = PANEL_W - MARGIN.left - MARGIN.right;
  const plotH = PANEL_H - MARGIN.top - MARGIN.bottom;
  const x0 = ox + MARGIN.left;
  const y0 = oy + MARGIN.top;
  const all = panel.series
    .flatMap((s) => s.points)
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const out = [text(ox + PANEL_W / 2, oy + 20, panel.title, { size: 14, anchor: "middle", weight: "bold" })];
  out.push(
    `<rect x="${x0}" y="${y0}" width="${plotW}" height="${plotH}" fill="none" stroke="#444444" stroke-width="1"/>`,
  );
  if (all.length === 0) {
    out.push(text(x0 + plotW / 2, y0 + plotH / 2, "no data yet", { anchor: "middle", fill: "#888888" }));
    return out;
  }
  const xMax = Math.max(1, ...all.map(([x]) => x));
  let [yMin, yMax] = panel.yRange ?? [Math.min(...all.map(([, y]) => y)), Math.max(...all.map(([, y]) => y))];
  if (!panel.yRange) {
    const pad = (yMax - yMin) * 0.05 || Math.abs(yMax) * 0.1 || 1;
    yMin = Math.max(0, yMin - pad);
    yMax += pad;
  }
  const sx = (x: number) => x0 + (x / xMax) * plotW;
  const sy = (y: number) => y0 + plotH - ((y - yMin) / (yMax - yMin)) * plotH;

  const yTicks = niceTicks(yMin, yMax).filter((v) => v >= yMin && v <= yMax);
  for (const v of yTicks) {
    out.push(
      `<line x1="${x0}" y1="${sy(v)}" x2="${x0 + plotW}" y2="${sy(v)}" stroke="#e5e5e5"/>`,
      text(x0 - 6, sy(v), panel.format(v), { size: 11, anchor: "end", baseline: "middle" }),
    );
  }
  for (const v of niceTicks(0, xMax, 6).filter((t) => Number.isInteger(t))) {
    out.push(
      `<line x1="${sx(v)}" y1="${y0 + plotH}" x2="${sx(v)}" y2="${y0 + plotH + 4}" stroke="#444444"/>`,
      text(sx(v), y0 + plotH + 16, String(v), { size: 11, anchor: "middle" }),
    );
  }
  out.push(text(x0 + plotW / 2, y0 + plotH + 34, "epoch", { size: 12, anchor: "middle" }));
  const widest = Math.max(...yTicks.map((v) => textWidth(panel.format(v), 11)));
  out.push(text(x0 - widest - 16, y0 + plotH / 2, panel.yLabel, { size: 12, anchor: "middle", rotate: -90 }));

  panel.series.forEach((s, i) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (pts.length > 0) {
      const d = pts
        .map(([x, y], j) => `${j === 0 ? "M" : "L"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`)
        .join(" ");
      out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
      if (s.dots) {
        for (const [x, y] of pts) out.push(`<circle cx="${sx(x)}" cy="${sy(y)}" r="2.5" fill="${s.color}"/>`);
      }
    }
    // Legend under the axis label, one entry per series.
    const lx = x0 + (i % 2) * (plotW / 2);
    const ly = y0 + plotH + 52 + Math.floor(i / 2) * 16;
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 18}" y2="${ly}" stroke="${s.color}" stroke-width="3"/>`,
      text(lx + 24, ly, s.label, { size: 11, baseline: "middle" }),
    );
  });
  return out;
}

function seriesOf(records: MetricsRecord[], key: string, label: string, color: string, dots = true): Series {
  const points = records
    .filter((r) => typeof r[key] === "number")
    .map((r): [number, number] => [r.epoch + 1, r[key] as number]);
  return { label, color, points, dots };
}

/** The three panels' SVG. Epoch records give loss and accuracy; step records give the lr's shape within epochs. */
export function curvesSvg(records: MetricsRecord[], title: string): string {
  const epochs = records.filter((r) => r.kind === "epoch");
  const steps = records.filter((r) => r.kind === "step" && typeof r.epoch_progress === "number");
  const pct = (key: string) =>
    epochs.map((r) => ({ ...r, [key]: typeof r[key] === "number" ? r[key] * 100 : null }));
  const accuracy: Series[] = [
    seriesOf(pct("val/top1"), "val/top1", "val top-1", COLORS.val),
    seriesOf(pct("val/top5"), "val/top5", "val top-5", COLORS.top5),
  ];
  if (epochs.some((r) => typeof r["val_ema/top1"] === "number")) {
    accuracy.push(seriesOf(pct("val_ema/top1"), "val_ema/top1", "EMA val top-1", COLORS.ema));
  }
  const lrPoints: Array<[number, number]> = steps.map((r) => [r.epoch_progress as number, r.lr as number]);
  const panels: Panel[] = [
    {
      title: "Loss",
      yLabel: "cross-entropy",
      format: (v) => String(Number(v.toPrecision(3))),
      series: [
        seriesOf(epochs, "train/loss", "train", COLORS.train),
        seriesOf(epochs, "val/loss", "val", COLORS.val),
      ],
    },
    { title: "Accuracy", yLabel: "%", format: (v) => String(v), yRange: [0, 100], series: accuracy },
    {
      title: "Learning rate",
      yLabel: "lr",
      format: (v) => (v === 0 ? "0" : v.toExponential(1)),
      series: [{ label: "lr (per logged step)", color: COLORS.lr, points: lrPoints }],
    },
  ];
  const body = [
    text((PANEL_W * panels.length) / 2, 22, title, { size: 16, anchor: "middle", weight: "bold" }),
  ];
  panels.forEach((p, i) => {
    body.push(...drawPanel(p, i * PANEL_W, 30));
  });
  return svgDocument(PANEL_W * panels.length, PANEL_H + 30, body);
}

export async function writeCurves(file: string, records: MetricsRecord[], title: string): Promise<void> {
  await renderSvgToPng(curvesSvg(records, title), file);
}
