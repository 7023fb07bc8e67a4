/**
 * The training loop (DESIGN.md "Training"): builds the data, model, optimizer and run folder
 * from a resolved config, runs `trainStep` epoch after epoch, validates, logs, saves, and
 * stops cleanly on a stop request or a non-finite loss.
 *
 * Every random draw is a function of (seed, epoch, step): the loader's order and augmentation
 * of batch `step` of epoch `e`, the mixup of that batch (stepRng), the dropout of optimizer
 * step `n`. So a checkpoint needs only the weights, the optimizer and EMA tensors and the
 * position (epoch, step) for a resumed run to repeat the uninterrupted one bit for bit.
 */
import * as fs from "node:fs";
import { setImmediate } from "node:timers/promises";
import * as tf from "@tensorflow/tfjs";
import { type Config, resolveConfig, stringifyConfig } from "../config/index.js";
import { type Batch, DataLoader, type EpochRun } from "../data/loader.js";
import { type MixupOptions, mixupCutmix, mixupOptions } from "../data/mixup.js";
import { stepRng } from "../data/random.js";
import { loadDatasets } from "../data/sources.js";
import type { EngineName } from "../engines/select.js";
import { InterruptedError, UsageError, VitError } from "../errors.js";
import { addBatch, emptyTally, type Summary, summarize } from "../eval/metrics.js";
import { writeFileAtomic } from "../io/atomic.js";
import { readSafetensorsHeader } from "../io/safetensors.js";
import { loadPretrained, type PretrainedReport } from "../model/pretrained.js";
import { createModel, type VisionTransformer } from "../model/vision_transformer.js";
import {
  type CheckpointMeta,
  readCheckpointMetadata,
  readRunState,
  type TrainerState,
  writeTrainerState,
  writeWeights,
} from "./checkpoint.js";
import { writeCurves } from "./curves.js";
import { NonFiniteWatch, RunningMeans } from "./device_stats.js";
import { trainingCriterion } from "./distill.js";
import { ModelEma } from "./ema.js";
import { classLogits } from "./losses.js";
import { formatSummary, Progress, type StepStatus } from "./progress.js";
import { createRunDir, MetricsLog, type MetricsRecord, runPath } from "./run_dir.js";
import { createTrainState } from "./state.js";
import { disposeStepResult, type MicroBatch, type TrainState, trainStep } from "./step.js";

export interface TrainOptions {
  config: Config;
  /** Continue the run in this folder from checkpoints/last.*; `config` comes from `loadRunConfig`. */
  resumeDir?: string;
  /** The active engine and backend, for the summary. */
  backend: string;
  /** The engine the steps run on, recorded in the checkpoints so a resume stays on it (default tfjs). */
  engine?: EngineName;
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
  const trainer = await Trainer.create(opts);
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

interface Parts {
  cfg: Config;
  classes: readonly string[];
  trainLoader: DataLoader;
  valLoader: DataLoader | null;
  model: VisionTransformer;
  emaModel: VisionTransformer | null;
  state: TrainState;
  mixup: MixupOptions | null;
  stepsPerEpoch: number;
  runDir: string;
  metrics: MetricsLog;
  progress: Progress;
  /** What model.pretrained loaded, for the summary (null when not set or resuming). */
  pretrained: PretrainedReport | null;
}

class Trainer {
  private readonly means = new RunningMeans();
  private readonly watch = new NonFiniteWatch();
  private lastVal: Summary | null = null;
  /** Where the last good checkpoint is, for the interrupt and non-finite messages. */
  private savedAt: string | null = null;

  private constructor(
    private readonly opts: TrainOptions,
    private readonly p: Parts,
    private readonly t: TrainerState,
  ) {}

  static async create(opts: TrainOptions): Promise<Trainer> {
    const cfg = opts.config;
    const { img_size: imgSize, in_chans: inChans } = cfg.model;
    const { seed, batch_size: batchSize, accum_steps: accumSteps } = cfg.train;
    const data = await loadDatasets(cfg.data, {
      seed,
      imgSize,
      numClasses: cfg.model.num_classes,
      cacheDir: opts.cacheDir,
    });
    const numClasses = data.classes.length;
    const loaderOpts = { batchSize, data: cfg.data, imgSize, inChans, seed };
    const trainLoader = new DataLoader(data.train, { ...loaderOpts, train: true });
    const valLoader =
      data.val.samples.length > 0 ? new DataLoader(data.val, { ...loaderOpts, train: false }) : null;
    const stepsPerEpoch = Math.ceil(trainLoader.stepsPerEpoch / accumSteps);

    const modelCfg = { ...cfg.model, num_classes: numClasses };
    const model = createModel(modelCfg, { seed });
    const emaModel = cfg.train.ema ? createModel(modelCfg, { seed }) : null;
    const { criterion, teacher } = await trainingCriterion(cfg, data.classes);
    const state = createTrainState(model, cfg.train, {
      criterion,
      teacher,
      stepsPerEpoch,
      inputShape: [imgSize, imgSize, inChans],
      numClasses,
    });
    const { params } = state;

    const progress = opts.progress ?? new Progress();
    let pretrained: PretrainedReport | null = null;
    let runDir: string;
    let t: TrainerState = {
      epoch: 0,
      epochStep: 0,
      step: 0,
      bestTop1: null,
      bestEpoch: null,
      running: { sums: {}, count: 0 },
      optimizer: { name: cfg.train.optimizer.name, steps: {} },
    };
    if (opts.resumeDir) {
      runDir = opts.resumeDir;
      const loaded = readRunState(runPath(runDir, "last"), runPath(runDir, "lastState"));
      model.loadStateDict(loaded.weights, { source: runPath(runDir, "last") });
      state.optimizer.importState(loaded.optimizer);
      t = loaded.trainer;
      if (emaModel) {
        state.ema = new ModelEma(params, emaModel.namedParameters(), cfg.train.ema!.decay);
        // A run that turned EMA on at resume starts it from the current weights.
        if (loaded.ema.size > 0) state.ema.importState(loaded.ema);
      }
    } else {
      runDir = createRunDir(cfg.output.dir, cfg.name);
      writeFileAtomic(runPath(runDir, "config"), stringifyConfig(cfg));
      if (cfg.model.pretrained) {
        pretrained = loadPretrained(model, cfg.model.pretrained, { log: (line) => progress.print(line) });
      }
      if (emaModel) state.ema = new ModelEma(params, emaModel.namedParameters(), cfg.train.ema!.decay);
    }
    const metrics = new MetricsLog(runPath(runDir, "metrics"));
    // Records past the checkpoint belong to steps the resumed run is about to redo.
    if (opts.resumeDir) metrics.truncateAfter(t.step);

    const trainer = new Trainer(
      opts,
      {
        cfg,
        classes: data.classes,
        trainLoader,
        valLoader,
        model,
        emaModel,
        state,
        mixup: mixupOptions(cfg.data.aug, cfg.train.label_smoothing, numClasses),
        stepsPerEpoch,
        runDir,
        metrics,
        progress,
        pretrained,
      },
      t,
    );
    trainer.means.import(t.running);
    if (opts.resumeDir) trainer.savedAt = trainer.position();
    trainer.printSummary(data.train.samples.length, valLoader ? data.val.samples.length : 0);
    return trainer;
  }

  /** "end of epoch 2" or "epoch 3 step 12/40": where training stands. */
  private position(): string {
    const { t } = this;
    return t.epochStep > 0
      ? `epoch ${t.epoch + 1} step ${t.epochStep}/${this.p.stepsPerEpoch}`
      : `end of epoch ${t.epoch}`;
  }

  private printSummary(trainImages: number, valImages: number): void {
    const { cfg, state, classes, stepsPerEpoch } = this.p;
    const g = state.optimizer.groups;
    const m = cfg.model;
    const n = (x: number) => x.toLocaleString("en-US");
    const opt = cfg.train.optimizer;
    const sched = cfg.train.schedule;
    const rows: Array<[string, string]> = [
      ["run", this.p.runDir],
      ["backend", this.opts.backend],
      [
        "model",
        `${m.preset ?? "custom"}: ${m.img_size} px, patch ${m.patch_size}, ${m.in_chans} channel(s), dim ${m.embed_dim}, depth ${m.depth}, heads ${m.num_heads}${m.distilled ? ", distilled" : ""}`,
      ],
      [
        "parameters",
        `${n(g.decayElements + g.noDecayElements)}: weight decay on ${n(g.decayElements)} (${g.decay.length} tensors), none on ${n(g.noDecayElements)} (${g.noDecay.length} tensors)`,
      ],
      ["data", `${cfg.data.train}: ${n(trainImages)} train / ${n(valImages)} val images`],
      ["classes", `${classes.length}${classes.length <= 10 ? ` (${classes.join(", ")})` : ""}`],
      [
        "steps",
        `${cfg.train.epochs} epochs x ${stepsPerEpoch} steps of ${cfg.train.batch_size}${cfg.train.accum_steps > 1 ? ` x ${cfg.train.accum_steps} accumulated` : ""} images`,
      ],
      [
        "optimizer",
        `${opt.name} lr ${opt.lr} wd ${opt.weight_decay}; ${sched.name} schedule, ${sched.warmup_epochs} warmup epoch(s) from lr ${sched.warmup_lr}`,
      ],
    ];
    const pre = this.p.pretrained;
    if (pre) {
      const notes = [
        pre.format,
        pre.resampledFrom && `pos_embed resampled from ${pre.resampledFrom.join("x")}`,
        pre.reinitialized.length > 0 && `new ${pre.reinitialized.join(", ")} for ${classes.length} classes`,
      ].filter(Boolean);
      rows.push(["pretrained", `${m.pretrained} (${notes.join("; ")})`]);
    }
    const d = cfg.distill;
    if (state.teacher && d) {
      rows.push([
        "distill",
        `${d.type}, alpha ${d.alpha}, tau ${d.tau}; teacher ${state.teacher.description}`,
      ]);
    }
    if (this.opts.resumeDir) rows.push(["resuming", `from ${this.position()} (step ${this.t.step})`]);
    this.p.progress.print(`vit train\n${formatSummary(rows)}`);
  }

  async run(): Promise<TrainResult> {
    for (let epoch = this.t.epoch; epoch < this.p.cfg.train.epochs; epoch++) {
      const trained = await this.trainEpoch(epoch);
      await this.endEpoch(epoch, trained);
      this.opts.onEpochEnd?.(epoch);
      if (this.opts.signal?.aborted) this.interrupted();
    }
    return { runDir: this.p.runDir, val: this.lastVal, bestTop1: this.t.bestTop1 };
  }

  /** Trains the rest of epoch `epoch`; returns the loader's pass and the images/s it ran at. */
  private async trainEpoch(epoch: number): Promise<EpochTrained> {
    const { cfg, state, stepsPerEpoch, trainLoader, progress } = this.p;
    const { t } = this;
    const accum = cfg.train.accum_steps;
    if (t.epochStep === 0) this.means.reset();
    const started = performance.now();
    const firstStep = t.epochStep;
    let window = { start: started, images: 0 };
    let epochImages = 0;
    let lastLoss: number | null = null;
    let chunk: MicroBatch[] = [];
    const run = trainLoader.epoch(epoch, t.epochStep * accum);
    for await (const batch of run) {
      chunk.push(this.microBatch(batch, epoch));
      if (chunk.length < accum && batch.step + 1 < trainLoader.stepsPerEpoch) continue;

      const r = trainStep(state, chunk, t.step);
      this.watch.record(t.step, r.loss, r.gradNorm);
      this.means.add({ loss: r.loss, ...r.terms });
      const images = chunk.reduce((a, b) => a + b.size, 0);
      window.images += images;
      epochImages += images;
      chunk = [];
      t.step++;
      t.epochStep++;

      const now = performance.now();
      const elapsed = (now - started) / 1000;
      const status: StepStatus = {
        epoch,
        epochs: cfg.train.epochs,
        step: t.epochStep,
        steps: stepsPerEpoch,
        imagesPerSec: epochImages / elapsed,
        lr: r.lr,
        loss: lastLoss,
        etaSec: ((stepsPerEpoch - t.epochStep) * elapsed) / (t.epochStep - firstStep),
      };
      if (t.step % cfg.train.log_interval === 0 || t.epochStep === stepsPerEpoch) {
        // Reading the loss forces a sync: only at log steps.
        lastLoss = r.loss.dataSync()[0];
        this.checkFinite(epoch);
        status.loss = lastLoss;
        status.imagesPerSec = window.images / ((now - window.start) / 1000);
        const record: MetricsRecord = {
          kind: "step",
          step: t.step,
          epoch,
          epoch_progress: epoch + t.epochStep / stepsPerEpoch,
          "train/loss": lastLoss,
          lr: r.lr,
          grad_norm: r.gradNorm.dataSync()[0],
          img_per_s: round(status.imagesPerSec, 1),
        };
        for (const [k, v] of Object.entries(r.terms)) record[`train/${k}`] = v.dataSync()[0];
        this.p.metrics.append(record);
        progress.logStep(status, t.step);
        window = { start: now, images: 0 };
      }
      progress.status(status);
      disposeStepResult(r);
      this.opts.onStep?.(t.step);
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
    const { mixup, state, cfg } = this.p;
    const targets = mixup
      ? mixupCutmix(batch, state.inputShape, mixup, stepRng(cfg.train.seed, epoch, batch.step)).targets
      : null;
    return { images: batch.images, labels: batch.labels, size: batch.size, targets };
  }

  private async endEpoch(epoch: number, { run, seconds, images }: EpochTrained): Promise<void> {
    const { cfg, model, emaModel, valLoader, runDir, metrics, classes } = this.p;
    const { t } = this;
    this.checkFinite(epoch);
    const started = performance.now();
    const val = valLoader ? await this.evaluate(model) : null;
    const valEma = valLoader && emaModel ? await this.evaluate(emaModel) : null;
    const train = this.means.means();
    t.epoch = epoch + 1;
    t.epochStep = 0;
    this.means.reset();
    const improved = val !== null && (t.bestTop1 === null || val.top1 > t.bestTop1);
    if (improved) {
      t.bestTop1 = val.top1;
      t.bestEpoch = epoch;
    }
    const record: MetricsRecord = {
      kind: "epoch",
      step: t.step,
      epoch,
      "train/loss": train.loss ?? null,
      lr: this.p.state.schedule(t.step - 1),
      bad_images: run.badImages,
      train_time_s: round(seconds, 2),
      img_per_s: round(images / seconds, 1),
      val_time_s: round((performance.now() - started) / 1000, 2),
    };
    for (const [k, v] of Object.entries(train)) if (k !== "loss") record[`train/${k}`] = v;
    if (val) Object.assign(record, { "val/loss": val.loss, "val/top1": val.top1, "val/top5": val.top5 });
    if (valEma) {
      Object.assign(record, {
        "val_ema/loss": valEma.loss,
        "val_ema/top1": valEma.top1,
        "val_ema/top5": valEma.top5,
      });
    }
    // The record goes first: a crash before the save is undone by the resume's truncation.
    metrics.append(record);
    this.saveLast();
    const meta: CheckpointMeta = {
      config: cfg,
      classes: [...classes],
      epoch: t.epoch,
      step: t.step,
      engine: this.opts.engine ?? "tfjs",
    };
    if (improved) {
      writeWeights(runPath(runDir, "best"), model.stateDict(), {
        ...meta,
        extra: { "val/top1": String(val.top1) },
      });
    }
    if (emaModel) writeWeights(runPath(runDir, "ema"), emaModel.stateDict(), meta);
    await writeCurves(
      runPath(runDir, "curves"),
      metrics.read(),
      `${cfg.name} (${cfg.model.preset ?? "custom"})`,
    );

    this.lastVal = val;
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    const parts = [`epoch ${epoch + 1}/${cfg.train.epochs}`, `train loss ${train.loss?.toFixed(4) ?? "-"}`];
    if (val)
      parts.push(`val loss ${val.loss.toFixed(4)}`, `top-1 ${pct(val.top1)}`, `top-5 ${pct(val.top5)}`);
    if (valEma) parts.push(`EMA top-1 ${pct(valEma.top1)}`);
    if (run.badImages > 0) parts.push(`${run.badImages} bad image(s) skipped`);
    if (improved) parts.push("(best)");
    this.p.progress.print(parts.join("  "));
  }

  private async evaluate(model: VisionTransformer): Promise<Summary> {
    const { state, valLoader } = this.p;
    const tally = emptyTally(state.numClasses);
    const [h, w, c] = state.inputShape;
    for await (const batch of valLoader!.epoch(0)) {
      const logits = tf.tidy(() =>
        classLogits(model.forward(tf.tensor4d(batch.images, [batch.size, h, w, c]), { training: false })),
      );
      const values = logits.dataSync();
      logits.dispose();
      addBatch(tally, values, batch.labels);
    }
    return summarize(tally);
  }

  /** Optimizer and trainer state first, weights last: both carry the step, so a cut between them is caught. */
  private saveLast(): void {
    const { state, runDir, model, cfg, classes } = this.p;
    const { t } = this;
    const optimizer = state.optimizer.exportState();
    t.running = this.means.export();
    t.optimizer = { name: state.optimizer.name, steps: optimizer.steps };
    writeTrainerState(runPath(runDir, "lastState"), t, optimizer, state.ema?.exportState() ?? null);
    writeWeights(runPath(runDir, "last"), model.stateDict(), {
      config: cfg,
      classes: [...classes],
      epoch: t.epoch,
      step: t.step,
      engine: this.opts.engine ?? "tfjs",
    });
    this.savedAt = this.position();
  }

  /** Reads the device-side watch. The weights after a bad step are garbage, so nothing more is saved. */
  private checkFinite(epoch: number): void {
    const bad = this.watch.read();
    if (bad === null) return;
    const last = this.savedAt
      ? `the last good checkpoint (${this.savedAt}) is ${runPath(this.p.runDir, "last")}`
      : "no checkpoint was saved before it";
    throw new VitError(
      `non-finite loss at step ${bad + 1} (epoch ${epoch + 1}): training stopped; ${last}. ` +
        "Lower train.optimizer.lr or set train.clip_grad_norm",
    );
  }

  private interrupted(): never {
    throw new InterruptedError(
      `interrupted: saved ${this.savedAt} to ${runPath(this.p.runDir, "last")}; ` +
        `continue with: vit train --resume ${this.p.runDir}`,
    );
  }

  async dispose(): Promise<void> {
    const { progress, state, model, emaModel, trainLoader, valLoader } = this.p;
    progress.endBar();
    state.optimizer.dispose();
    this.means.reset();
    this.watch.dispose();
    model.dispose();
    emaModel?.dispose();
    state.teacher?.dispose();
    await Promise.all([trainLoader.close(), valLoader?.close()]);
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
