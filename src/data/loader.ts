/**
 * The data loader: an async iterator of normalized batches, built by `data.workers` worker
 * threads at most `data.prefetch` batches ahead of the consumer (so memory is flat however long
 * the epoch). Batch `step` of epoch `e` is a pure function of (seed, e, step): the order is a
 * seeded shuffle of e, each image's augmentation is seeded by its position, so
 * `epoch(e, startStep)` resumes mid-epoch with exactly the batches an uninterrupted run sees.
 */
import type { DataConfig } from "../config/schema.js";
import { DataError } from "../errors.js";
import { type BuiltBatch, type LoaderSpec, stepsPerEpoch } from "./batch.js";
import type { Dataset } from "./dataset.js";
import { WorkerPool } from "./pool.js";
import { transformOptions } from "./transforms.js";

export interface Batch {
  /** [size, imgSize, imgSize, inChans], normalized by data.mean / data.std. */
  images: Float32Array;
  labels: Int32Array;
  /** Index into dataset.samples of each image. */
  indices: Int32Array;
  size: number;
  /** Position of the batch in its epoch. */
  step: number;
}

export interface LoaderOptions {
  /** Training: shuffled, augmented, bad images replaced. Otherwise: file order, eval transform, bad images dropped. */
  train: boolean;
  batchSize: number;
  data: DataConfig;
  imgSize: number;
  inChans: number;
  seed: number;
  /** Drop the last partial batch; default: true when training. */
  dropLast?: boolean;
  /** Where the one warning per bad file goes (default: stderr). */
  onWarning?: (message: string) => void;
}

/** One pass over the data; `badImages` counts the bad files met so far in this pass. */
export interface EpochRun extends AsyncIterable<Batch> {
  readonly epoch: number;
  readonly badImages: number;
}

export class DataLoader {
  readonly stepsPerEpoch: number;
  readonly classes: readonly string[];
  private readonly spec: LoaderSpec;
  private readonly warn: (message: string) => void;
  private readonly warned = new Set<string>();
  private pool: WorkerPool | null = null;

  constructor(
    readonly dataset: Dataset,
    opts: LoaderOptions,
  ) {
    this.spec = {
      train: opts.train,
      batchSize: opts.batchSize,
      dropLast: opts.dropLast ?? opts.train,
      imgSize: opts.imgSize,
      inChans: opts.inChans,
      seed: opts.seed,
      data: opts.data,
    };
    // Parses the RandAugment string: a bad one fails now, not in a worker.
    transformOptions(opts.data, opts.imgSize);
    this.classes = dataset.classes;
    const n = dataset.samples.length;
    this.stepsPerEpoch = stepsPerEpoch(n, opts.batchSize, this.spec.dropLast);
    if (this.stepsPerEpoch === 0) {
      throw new DataError(
        n === 0
          ? `${dataset.source}: no images`
          : `${dataset.source}: ${n} images is less than one batch of ${opts.batchSize} (lower train.batch_size)`,
      );
    }
    this.warn = opts.onWarning ?? ((m) => process.stderr.write(`warning: ${m}\n`));
  }

  get numImages(): number {
    return this.dataset.samples.length;
  }

  epoch(epoch: number, startStep = 0): EpochRun {
    if (!Number.isInteger(startStep) || startStep < 0 || startStep > this.stepsPerEpoch) {
      throw new RangeError(`startStep ${startStep} is outside [0, ${this.stepsPerEpoch}]`);
    }
    const run = {
      epoch,
      badImages: 0,
      [Symbol.asyncIterator]: () => this.batches(epoch, startStep, run),
    };
    return run;
  }

  /** Stop the worker threads; the loader starts new ones if iterated again. */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    await pool?.close();
  }

  private workers(): WorkerPool {
    this.pool ??= new WorkerPool(this.spec.data.workers, {
      paths: this.dataset.samples.map((s) => s.path),
      labels: Int32Array.from(this.dataset.samples, (s) => s.label),
      spec: this.spec,
    });
    return this.pool;
  }

  private async *batches(
    epoch: number,
    startStep: number,
    run: { badImages: number },
  ): AsyncGenerator<Batch> {
    const pool = this.workers();
    // Batches being built while the consumer works on the current one.
    const ahead = Math.max(this.spec.data.prefetch, pool.size);
    const pending = new Map<number, Promise<BuiltBatch>>();
    let requested = startStep;
    try {
      for (let step = startStep; step < this.stepsPerEpoch; step++) {
        for (; requested < this.stepsPerEpoch && requested <= step + ahead; requested++) {
          pending.set(requested, pool.run(epoch, requested));
        }
        const built = await pending.get(step)!;
        pending.delete(step);
        pool.share(built.cached);
        for (const b of built.bad) {
          run.badImages++;
          if (!this.warned.has(b.file)) {
            this.warned.add(b.file);
            this.warn(`skipping bad image ${b.file}: ${b.reason}`);
          }
        }
        yield { images: built.images, labels: built.labels, indices: built.indices, size: built.size, step };
      }
    } finally {
      // Batches nobody will read: let them finish quietly.
      for (const p of pending.values()) p.catch(() => {});
    }
  }
}
