/**
 * Builds what a run trains with from a resolved config: data loaders, model (and its EMA copy),
 * the step's state, the run folder and its metrics log; on resume, everything is read back from
 * the run folder's last checkpoint instead of initialised.
 */
import type { Config } from "../config/index.js";
import { stringifyConfig } from "../config/index.js";
import { DataLoader } from "../data/loader.js";
import { type MixupOptions, mixupOptions } from "../data/mixup.js";
import { loadDatasets } from "../data/sources.js";
import { writeFileAtomic } from "../io/atomic.js";
import { createModel, type VisionTransformer } from "../model/vision_transformer.js";
import { type RunProgress, readRunState } from "../weights/checkpoint.js";
import { loadPretrained, type PretrainedReport } from "../weights/pretrained.js";
import { createRunDir, MetricsLog, runPath } from "../weights/run_dir.js";
import { trainingCriterion } from "./distill.js";
import { ModelEma } from "./ema.js";
import { type EngineSpec, onnxruntimeStepEngine, type StepEngine, tfjsStepEngine } from "./engine.js";
import { formatSummary, Progress } from "./progress.js";
import { createTrainState } from "./state.js";
import type { TrainState } from "./step.js";

export interface TrainingSetup {
  cfg: Config;
  classes: readonly string[];
  trainLoader: DataLoader;
  valLoader: DataLoader | null;
  trainImages: number;
  valImages: number;
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
  /** Runs the steps and the validation. */
  engine: StepEngine;
}

export interface SetupOptions {
  /** Continue the run in this folder from checkpoints/last.*. */
  resumeDir?: string;
  progress?: Progress;
  cacheDir?: string;
  /** The engine of the steps (default tfjs). */
  engine?: EngineSpec;
}

/** The setup, and where the run stands: step 0 for a new run, the last checkpoint's position on resume. */
export async function setUpTraining(
  cfg: Config,
  opts: SetupOptions,
): Promise<{ setup: TrainingSetup; at: RunProgress }> {
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
  const engine =
    opts.engine?.engine === "onnxruntime"
      ? onnxruntimeStepEngine(state, model, cfg, opts.engine)
      : tfjsStepEngine(state);
  const attachEma = () => {
    if (emaModel) state.ema = new ModelEma(state.params, emaModel.namedParameters(), cfg.train.ema!.decay);
  };

  const progress = opts.progress ?? new Progress();
  let pretrained: PretrainedReport | null = null;
  let runDir: string;
  let at: RunProgress = {
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
    at = loaded.progress;
    attachEma();
    // A run that turned EMA on at resume starts it from the current weights.
    if (state.ema && loaded.ema.size > 0) state.ema.importState(loaded.ema);
  } else {
    runDir = createRunDir(cfg.output.dir, cfg.name);
    writeFileAtomic(runPath(runDir, "config"), stringifyConfig(cfg));
    if (cfg.model.pretrained) {
      pretrained = loadPretrained(model, cfg.model.pretrained, { log: (line) => progress.print(line) });
    }
    attachEma();
  }
  const metrics = new MetricsLog(runPath(runDir, "metrics"));
  // Records past the checkpoint belong to steps the resumed run is about to redo.
  if (opts.resumeDir) metrics.truncateAfter(at.step);

  const setup: TrainingSetup = {
    cfg,
    classes: data.classes,
    trainLoader,
    valLoader,
    trainImages: data.train.samples.length,
    valImages: valLoader ? data.val.samples.length : 0,
    model,
    emaModel,
    state,
    mixup: mixupOptions(cfg.data.aug, cfg.train.label_smoothing, numClasses),
    stepsPerEpoch,
    runDir,
    metrics,
    progress,
    pretrained,
    engine,
  };
  return { setup, at };
}

/** The table `vit train` prints before the first step. */
export function formatSetup(setup: TrainingSetup, backend: string, resumingFrom: string | null): string {
  const { cfg, state, classes, stepsPerEpoch } = setup;
  const g = state.optimizer.groups;
  const m = cfg.model;
  const n = (x: number) => x.toLocaleString("en-US");
  const opt = cfg.train.optimizer;
  const sched = cfg.train.schedule;
  const rows: Array<[string, string]> = [
    ["run", setup.runDir],
    ["backend", backend],
    [
      "model",
      `${m.preset ?? "custom"}: ${m.img_size} px, patch ${m.patch_size}, ${m.in_chans} channel(s), dim ${m.embed_dim}, depth ${m.depth}, heads ${m.num_heads}${m.distilled ? ", distilled" : ""}`,
    ],
    [
      "parameters",
      `${n(g.decayElements + g.noDecayElements)}: weight decay on ${n(g.decayElements)} (${g.decay.length} tensors), none on ${n(g.noDecayElements)} (${g.noDecay.length} tensors)`,
    ],
    ["data", `${cfg.data.train}: ${n(setup.trainImages)} train / ${n(setup.valImages)} val images`],
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
  const pre = setup.pretrained;
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
    rows.push(["distill", `${d.type}, alpha ${d.alpha}, tau ${d.tau}; teacher ${state.teacher.description}`]);
  }
  if (resumingFrom) rows.push(["resuming", resumingFrom]);
  return `vit train\n${formatSummary(rows)}`;
}
