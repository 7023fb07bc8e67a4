/**
 * The checkpoints a run writes into its folder: last (with the optimizer, EMA and position in
 * its state file, for --resume), best (by val top-1) and ema. Remembers where the last good save
 * stands, for the messages of an interrupted or diverged run.
 */
import type { EngineName } from "../engines/select.js";
import type { CheckpointMeta, RunProgress } from "../weights/checkpoint.js";
import { writeRunProgress, writeWeights } from "../weights/checkpoint.js";
import { runPath } from "../weights/run_dir.js";
import type { TrainingSetup } from "./setup.js";

/** "end of epoch 2" or "epoch 3 step 12/40": where training stands. */
export function describePosition(at: RunProgress, stepsPerEpoch: number): string {
  return at.epochStep > 0
    ? `epoch ${at.epoch + 1} step ${at.epochStep}/${stepsPerEpoch}`
    : `end of epoch ${at.epoch}`;
}

export class RunCheckpoints {
  /** Where the last good checkpoint stands (null before the first save of a new run). */
  savedAt: string | null = null;

  /** `engine`: what the run trains on, recorded in every checkpoint so a resume stays on it. */
  constructor(
    private readonly setup: TrainingSetup,
    private readonly engine: EngineName,
  ) {}

  get lastFile(): string {
    return runPath(this.setup.runDir, "last");
  }

  /** Optimizer and progress first, weights last: both carry the step, so a cut between them is caught. */
  saveLast(at: RunProgress): void {
    const { state, model } = this.setup;
    const optimizer = state.optimizer.exportState();
    at.optimizer = { name: state.optimizer.name, steps: optimizer.steps };
    writeRunProgress(
      runPath(this.setup.runDir, "lastState"),
      at,
      optimizer,
      state.ema?.exportState() ?? null,
    );
    writeWeights(this.lastFile, model.stateDict(), this.meta(at));
    this.savedAt = describePosition(at, this.setup.stepsPerEpoch);
  }

  saveBest(at: RunProgress, top1: number): void {
    writeWeights(runPath(this.setup.runDir, "best"), this.setup.model.stateDict(), {
      ...this.meta(at),
      extra: { "val/top1": String(top1) },
    });
  }

  saveEma(at: RunProgress): void {
    const { emaModel } = this.setup;
    if (emaModel) writeWeights(runPath(this.setup.runDir, "ema"), emaModel.stateDict(), this.meta(at));
  }

  private meta(at: RunProgress): CheckpointMeta {
    const { cfg, classes } = this.setup;
    return { config: cfg, classes: [...classes], epoch: at.epoch, step: at.step, engine: this.engine };
  }
}
