/**
 * The learning rate as a pure function of the optimizer step, with timm's per-update
 * semantics (`sched_on_updates`: every length in epochs is multiplied by the updates per
 * epoch). Step 0 is the first update and runs at `warmup_lr`, as in timm where the
 * scheduler sets `warmup_lr_init` before the first update.
 */
import type { ScheduleConfig } from "../config/schema.js";

export interface ScheduleSpec {
  schedule: ScheduleConfig;
  baseLr: number;
  epochs: number;
  stepsPerEpoch: number;
}

export type LrSchedule = (step: number) => number;

export function makeSchedule({ schedule, baseLr, epochs, stepsPerEpoch }: ScheduleSpec): LrSchedule {
  const warmupSteps = Math.round(schedule.warmup_epochs * stepsPerEpoch);
  const totalSteps = epochs * stepsPerEpoch;
  const decaySteps = Math.max(1, Math.round(schedule.decay_epochs * stepsPerEpoch));
  const { warmup_lr: warmupLr, min_lr: minLr } = schedule;

  const afterWarmup: LrSchedule = {
    // timm CosineLRScheduler (warmup_prefix=False, one cycle): the cosine spans the whole run
    // and warmup only replaces its first steps.
    cosine: (t: number) =>
      t >= totalSteps ? minLr : minLr + 0.5 * (baseLr - minLr) * (1 + Math.cos((Math.PI * t) / totalSteps)),
    // timm StepLRScheduler: multiply by decay_rate every decay_epochs.
    step: (t: number) => baseLr * schedule.decay_rate ** Math.floor(t / decaySteps),
    constant: () => baseLr,
  }[schedule.name];

  return (step: number) => {
    if (step < warmupSteps) return warmupLr + (step * (baseLr - warmupLr)) / warmupSteps;
    return afterWarmup(step);
  };
}
