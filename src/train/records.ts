/** What a run writes to metrics.jsonl and prints, per logged step and per epoch. */
import type { Summary } from "../metrics/classification.js";
import type { MetricsRecord } from "../weights/run_dir.js";

export interface StepValues {
  step: number;
  epoch: number;
  /** Epochs done, fractional: epoch + steps done in it / steps per epoch. */
  epochProgress: number;
  loss: number;
  lr: number;
  gradNorm: number;
  imagesPerSec: number;
  /** Extra loss terms (distillation: the two heads' losses). */
  terms: Record<string, number>;
}

export function stepRecord(v: StepValues): MetricsRecord {
  const record: MetricsRecord = {
    kind: "step",
    step: v.step,
    epoch: v.epoch,
    epoch_progress: v.epochProgress,
    "train/loss": v.loss,
    lr: v.lr,
    grad_norm: v.gradNorm,
    img_per_s: round(v.imagesPerSec, 1),
  };
  for (const [k, value] of Object.entries(v.terms)) record[`train/${k}`] = value;
  return record;
}

export interface EpochValues {
  step: number;
  epoch: number;
  /** Means over the epoch's steps: `loss` and the extra terms. */
  train: Record<string, number>;
  lr: number;
  badImages: number;
  trainSeconds: number;
  images: number;
  valSeconds: number;
  val: Summary | null;
  valEma: Summary | null;
}

export function epochRecord(v: EpochValues): MetricsRecord {
  const record: MetricsRecord = {
    kind: "epoch",
    step: v.step,
    epoch: v.epoch,
    "train/loss": v.train.loss ?? null,
    lr: v.lr,
    bad_images: v.badImages,
    train_time_s: round(v.trainSeconds, 2),
    img_per_s: round(v.images / v.trainSeconds, 1),
    val_time_s: round(v.valSeconds, 2),
  };
  for (const [k, value] of Object.entries(v.train)) if (k !== "loss") record[`train/${k}`] = value;
  for (const [prefix, s] of [
    ["val", v.val],
    ["val_ema", v.valEma],
  ] as const) {
    if (s)
      Object.assign(record, {
        [`${prefix}/loss`]: s.loss,
        [`${prefix}/top1`]: s.top1,
        [`${prefix}/top5`]: s.top5,
      });
  }
  return record;
}

/** The line printed at the end of an epoch. */
export function epochLine(v: EpochValues, epochs: number, improved: boolean): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const parts = [`epoch ${v.epoch + 1}/${epochs}`, `train loss ${v.train.loss?.toFixed(4) ?? "-"}`];
  if (v.val)
    parts.push(`val loss ${v.val.loss.toFixed(4)}`, `top-1 ${pct(v.val.top1)}`, `top-5 ${pct(v.val.top5)}`);
  if (v.valEma) parts.push(`EMA top-1 ${pct(v.valEma.top1)}`);
  if (v.badImages > 0) parts.push(`${v.badImages} bad image(s) skipped`);
  if (improved) parts.push("(best)");
  return parts.join("  ");
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
