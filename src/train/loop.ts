/**
 * The training loop (docs/design.md "Training"): from the setup (setup.ts), runs `trainStep`
 * epoch after epoch, validates, logs (records.ts), saves (run_checkpoints.ts), and stops cleanly
 * on a stop request or a non-finite loss.
 *
 * Every random draw is a function of (seed, epoch, step): the loader's order and augmentation
 * of batch `step` of epoch `e`, the mixup of that batch (stepRng), the dropout of optimizer
 * step `n`. So a checkpoint needs only the weights, the optimizer and EMA tensors and the
 * position (epoch, step) for a resumed run to repeat the uninterrupted one bit for bit.
 */
import * as fs from "node:fs";
import { setImmediate } from "node:timers/promises";
import { type Config, resolveConfig } from "../config/index.js";
import type { Batch, EpochRun } from "../data/loader.js";
import { mixupCutmix } from "../data/mixup.js";
import { stepRng } from "../data/random.js";
import { InterruptedError, UsageError, VitError } from "../errors.js";
import { readSafetensorsHeader } from "../io/safetensors.js";
import type { Summary } from "../metrics/classification.js";
import type { VisionTransformer } from "../model/vision_transformer.js";
import { type RunProgress, readCheckpointMetadata } from "../weights/checkpoint.js";
import { runPath } from "../weights/run_dir.js";
import { writeCurves } from "./curves.js";
import { NonFiniteWatch, RunningMeans } from "./device_stats.js";
import type { EngineSpec } from "./engine.js";
import type { Progress, StepStatus } from "./progress.js";
import { type EpochValues, epochLine, epochRecord, stepRecord } from "./records.js";
import { describePosition, RunCheckpoints } from "./run_checkpoints.js";
import { formatSetup, setUpTraining, type TrainingSetup } from "./setup.js";
import { disposeStepResult, type MicroBatch } from "./step.js";

export interface TrainOptions {
  config: Config;
  /** Continue the run in this folder from checkpoints/last.*; `config` comes from `loadRunConfig`. */
  resumeDir?: string;
  /** The active engine and backend, for the summary. */
  backend: string;
  /** The engine of the steps (default tfjs), recorded in the checkpoints so a resume stays on it. */
  engine?: EngineSpec;
  /** Aborting finishes the current step, saves, and throws InterruptedError (exit 130). */
  signal?: AbortSignal;
  progress?: Progress;
  /** Where the synthetic dataset is cached (default: the data module's). */
  cacheDir?: string;
  /** Called after each optimizer step (with the number of steps done) and after each epoch is saved. */
  onStep?: (step: number) => void;
  onEpochEnd?: (epoch: number) => void;
}

export interface TrainResult {
  runDir: string;
  /** The last epoch's validation (null without val data) and the best val top-1 of the run. */
  val: Summary | null;
  bestTop1: number | null;
}

/** The config stored in a run's last checkpoint, with `--set` overrides on top. */
export function loadRunConfig(runDir: string, set: readonly string[] = []): Config {
  const file = runPath(runDir, "last");
  if (!fs.existsSync(file)) throw new UsageError(`${runDir}: no ${file} to resume from`);
  const { config } = readCheckpointMetadata(file, readSafetensorsHeader(file).metadata);
  return resolveConfig(config, { source: file, set });
}

export async function train(opts: TrainOptions): Promise<TrainResult> {
  const { setup, at } = await setUpTraining(opts.config, opts);
  const trainer = new Trainer(opts, setup, at);
  try {
    return await trainer.run();
  } finally {
    await trainer.dispose();
  }
}

interface EpochTrained {
  run: EpochRun;
  seconds: number;
  images: number;
}

class Trainer {
  private readonly means = new RunningMeans();
  private readonly watch = new NonFiniteWatch();
  private readonly checkpoints: RunCheckpoints;
  private lastVal: Summary | null = null;

  constructor(
    private readonly opts: TrainOptions,
    private readonly setup: TrainingSetup,
    /** Mutated as steps and epochs complete; saved with every last checkpoint. */
    private readonly at: RunProgress,
  ) {
    this.checkpoints = new RunCheckpoints(setup, opts.engine?.engine ?? "tfjs");
    this.means.import(at.running);
    const resumingFrom = opts.resumeDir ? describePosition(at, setup.stepsPerEpoch) : null;
    if (resumingFrom) this.checkpoints.savedAt = resumingFrom;
    setup.progress.print(
      formatSetup(setup, opts.backend, resumingFrom && `from ${resumingFrom} (step ${at.step})`),
    );
  }

  async run(): Promise<TrainResult> {
    for (let epoch = this.at.epoch; epoch < this.setup.cfg.train.epochs; epoch++) {
      const trained = await this.trainEpoch(epoch);
      await this.endEpoch(epoch, trained);
      this.opts.onEpochEnd?.(epoch);
      if (this.opts.signal?.aborted) this.interrupted();
    }
    return { runDir: this.setup.runDir, val: this.lastVal, bestTop1: this.at.bestTop1 };
  }

  /** Trains the rest of epoch `epoch`; returns the loader's pass and the images/s it ran at. */
  private async trainEpoch(epoch: number): Promise<EpochTrained> {
    const { cfg, engine, stepsPerEpoch, trainLoader, progress } = this.setup;
    const { at } = this;
    const accum = cfg.train.accum_steps;
    if (at.epochStep === 0) this.means.reset();
    const started = performance.now();
    const firstStep = at.epochStep;
    let window = { start: started, images: 0 };
    let epochImages = 0;
    let lastLoss: number | null = null;
    let chunk: MicroBatch[] = [];
    const run = trainLoader.epoch(epoch, at.epochStep * accum);
    for await (const batch of run) {
      chunk.push(this.microBatch(batch, epoch));
      if (chunk.length < accum && batch.step + 1 < trainLoader.stepsPerEpoch) continue;

      const r = await engine.step(chunk, at.step);
      this.watch.record(at.step, r.loss, r.gradNorm);
      this.means.add({ loss: r.loss, ...r.terms });
      const images = chunk.reduce((a, b) => a + b.size, 0);
      window.images += images;
      epochImages += images;
      chunk = [];
      at.step++;
      at.epochStep++;

      const now = performance.now();
      const elapsed = (now - started) / 1000;
      const status: StepStatus = {
        epoch,
        epochs: cfg.train.epochs,
        step: at.epochStep,
        steps: stepsPerEpoch,
        imagesPerSec: epochImages / elapsed,
        lr: r.lr,
        loss: lastLoss,
        etaSec: ((stepsPerEpoch - at.epochStep) * elapsed) / (at.epochStep - firstStep),
      };
      if (at.step % cfg.train.log_interval === 0 || at.epochStep === stepsPerEpoch) {
        // Reading the loss forces a sync: only at log steps.
        lastLoss = r.loss.dataSync()[0];
        this.checkFinite(epoch);
        status.loss = lastLoss;
        status.imagesPerSec = window.images / ((now - window.start) / 1000);
        const terms = Object.fromEntries(Object.entries(r.terms).map(([k, v]) => [k, v.dataSync()[0]]));
        this.setup.metrics.append(
          stepRecord({
            step: at.step,
            epoch,
            epochProgress: epoch + at.epochStep / stepsPerEpoch,
            loss: lastLoss,
            lr: r.lr,
            gradNorm: r.gradNorm.dataSync()[0],
            imagesPerSec: status.imagesPerSec,
            terms,
          }),
        );
        progress.logStep(status, at.step);
        window = { start: now, images: 0 };
      }
      progress.status(status);
      disposeStepResult(r);
      this.opts.onStep?.(at.step);
      // A step is synchronous work: yield to the event loop so worker replies (prefetch) and
      // signal handlers (a stop request) are served between steps, not only when data runs dry.
      await setImmediate();
      if (this.opts.signal?.aborted) {
        this.checkFinite(epoch);
        this.saveLast();
        this.interrupted();
      }
    }
    return { run, seconds: (performance.now() - started) / 1000, images: epochImages };
  }

  /** A loader batch as the step takes it, mixed (in place) when mixup / cutmix is on. */
  private microBatch(batch: Batch, epoch: number): MicroBatch {
    const { mixup, state, cfg } = this.setup;
    const targets = mixup
      ? mixupCutmix(batch, state.inputShape, mixup, stepRng(cfg.train.seed, epoch, batch.step)).targets
      : null;
    return { images: batch.images, labels: batch.labels, size: batch.size, targets };
  }

  private async endEpoch(epoch: number, { run, seconds, images }: EpochTrained): Promise<void> {
    const { cfg, model, emaModel, metrics } = this.setup;
    const { at } = this;
    this.checkFinite(epoch);
    const started = performance.now();
    const val = await this.validate(model);
    const valEma = emaModel ? await this.validate(emaModel) : null;
    const values: EpochValues = {
      step: at.step,
      epoch,
      train: this.means.means(),
      lr: this.setup.state.schedule(at.step - 1),
      badImages: run.badImages,
      trainSeconds: seconds,
      images,
      valSeconds: (performance.now() - started) / 1000,
      val,
      valEma,
    };
    at.epoch = epoch + 1;
    at.epochStep = 0;
    this.means.reset();
    const improved = val !== null && (at.bestTop1 === null || val.top1 > at.bestTop1);
    if (improved) {
      at.bestTop1 = val.top1;
      at.bestEpoch = epoch;
    }
    // The record goes first: a crash before the save is undone by the resume's truncation.
    metrics.append(epochRecord(values));
    this.saveLast();
    if (improved) this.checkpoints.saveBest(at, val.top1);
    this.checkpoints.saveEma(at);
    await writeCurves(
      runPath(this.setup.runDir, "curves"),
      metrics.read(),
      `${cfg.name} (${cfg.model.preset ?? "custom"})`,
    );
    this.lastVal = val;
    this.setup.progress.print(epochLine(values, cfg.train.epochs, improved));
  }

  /** Val top-1/top-5/loss of `model` (null without val data). */
  private async validate(model: VisionTransformer): Promise<Summary | null> {
    const { valLoader } = this.setup;
    return valLoader ? this.setup.engine.validate(model, valLoader) : null;
  }

  private saveLast(): void {
    this.at.running = this.means.export();
    this.checkpoints.saveLast(this.at);
  }

  /** Reads the device-side watch. The weights after a bad step are garbage, so nothing more is saved. */
  private checkFinite(epoch: number): void {
    const bad = this.watch.read();
    if (bad === null) return;
    const { savedAt, lastFile } = this.checkpoints;
    const last = savedAt
      ? `the last good checkpoint (${savedAt}) is ${lastFile}`
      : "no checkpoint was saved before it";
    throw new VitError(
      `non-finite loss at step ${bad + 1} (epoch ${epoch + 1}): training stopped; ${last}. ` +
        "Lower train.optimizer.lr or set train.clip_grad_norm",
    );
  }

  private interrupted(): never {
    throw new InterruptedError(
      `interrupted: saved ${this.checkpoints.savedAt} to ${this.checkpoints.lastFile}; ` +
        `continue with: vit train --resume ${this.setup.runDir}`,
    );
  }

  async dispose(): Promise<void> {
    const { progress, state, model, emaModel, trainLoader, valLoader } = this.setup;
    progress.endBar();
    state.optimizer.dispose();
    this.means.reset();
    this.watch.dispose();
    model.dispose();
    emaModel?.dispose();
    state.teacher?.dispose();
    await Promise.all([trainLoader.close(), valLoader?.close(), this.setup.engine.dispose()]);
  }
}
