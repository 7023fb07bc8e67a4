/**
 * The batch a run trains with is `batch_size x accum_steps` images per optimizer update. Spread over
 * W processes, each process takes `perProcess` images per forward pass and accumulates `accumSteps`
 * of them, so `perProcess x W x accumSteps` stays the configured effective batch (and with it the
 * lr, which this project never rescales by batch).
 */
import { ConfigError } from "../errors.js";

export interface BatchSplit {
  effective: number;
  processes: number;
  perProcess: number;
  accumSteps: number;
}

/**
 * The fewest accumulation steps whose per-process batch is no larger than `batchSize` (what one
 * device of this run was given), so one process reproduces the config exactly and more processes
 * accumulate less.
 */
export function splitBatch(batchSize: number, accumSteps: number, processes: number): BatchSplit {
  const effective = batchSize * accumSteps;
  if (effective % processes !== 0) {
    throw new ConfigError(
      `train.batch_size ${batchSize} x train.accum_steps ${accumSteps} = ${effective} images per update ` +
        `cannot be split evenly over ${processes} processes (--nproc-per-node x --nnodes): ` +
        "choose a process count that divides it, or change train.batch_size / train.accum_steps",
    );
  }
  for (let accum = 1; ; accum++) {
    const rows = effective / processes;
    if (rows % accum === 0 && rows / accum <= batchSize) {
      return { effective, processes, perProcess: rows / accum, accumSteps: accum };
    }
  }
}
