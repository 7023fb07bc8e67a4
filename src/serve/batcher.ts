/**
 * Dynamic batching: images from concurrent requests wait in one queue and share a forward pass.
 * A batch starts when `maxBatch` images of one kind are waiting, or when the oldest has waited
 * `windowMs` and no admitted image is still being decoded (a burst of requests joins one batch
 * even when decoding it takes longer than the window), but never later than WINDOW_STRETCH
 * windows. When the last batch was a lone image and nothing else is being decoded, there is no
 * company to wait for (one client, one request at a time): the image starts at once. One batch
 * runs at a time (the engine is one); images arriving meanwhile queue, and form the next batch.
 * Admission is bounded: `admit(n)` refuses when the images admitted and not yet released would
 * exceed `maxQueue`, so memory is bounded however many clients connect.
 */

/** The longest a batch waits for images still being decoded, in windows. */
const WINDOW_STRETCH = 4;

/** Runs one batch: one output per input, in order. */
export type Runner<I, O> = (inputs: I[]) => Promise<O[]>;

interface Job {
  kind: string;
  input: unknown;
  enqueued: number;
  resolve: (output: unknown) => void;
  reject: (err: unknown) => void;
}

export interface BatcherLimits {
  maxBatch: number;
  windowMs: number;
  maxQueue: number;
}

export class Batcher {
  private readonly queue: Job[] = [];
  private readonly runners = new Map<string, Runner<unknown, unknown>>();
  private admitted = 0;
  private running = false;
  /** Images in the batch running now. */
  private inBatch = 0;
  private draining = false;
  private timer: NodeJS.Timeout | null = null;
  /** Images per second of the last batch, for Retry-After. */
  private rate = 0;
  /** Images in the last batch: 1 says a lone client, whose next image need not wait for company. */
  private lastBatch = 0;

  constructor(private readonly limits: BatcherLimits) {}

  /** A queue of jobs of one kind, run `maxBatch` at a time by `runner`. */
  lane<I, O>(kind: string, runner: Runner<I, O>): (input: I, signal?: AbortSignal) => Promise<O> {
    this.runners.set(kind, runner as Runner<unknown, unknown>);
    return (input, signal) => this.submit(kind, input, signal) as Promise<O>;
  }

  /** Images admitted and not yet released (queued, decoding or running). */
  get inFlight(): number {
    return this.admitted;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** True once `drain` was called: the server is stopping. */
  get stopping(): boolean {
    return this.draining;
  }

  /** Reserves room for `n` images; false when the queue is full (the caller answers 503). */
  admit(n: number): boolean {
    if (this.draining || this.admitted + n > this.limits.maxQueue) return false;
    this.admitted += n;
    return true;
  }

  release(n: number): void {
    this.admitted -= n;
  }

  /** Seconds a refused client should wait: the time the work in flight takes at the last rate. */
  retryAfter(): number {
    if (this.rate <= 0) return 1;
    return Math.min(60, Math.max(1, Math.ceil(this.admitted / this.rate)));
  }

  /** Runs what is queued without waiting for the window, and refuses new work from now on. */
  drain(): void {
    this.draining = true;
    this.schedule();
  }

  private submit(kind: string, input: unknown, signal?: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const job: Job = { kind, input, enqueued: performance.now(), resolve, reject };
      if (signal) {
        if (signal.aborted) return reject(signal.reason);
        // A job given up on before its batch starts leaves the queue; once running it finishes.
        signal.addEventListener(
          "abort",
          () => {
            const i = this.queue.indexOf(job);
            if (i < 0) return;
            this.queue.splice(i, 1);
            reject(signal.reason);
          },
          { once: true },
        );
      }
      this.queue.push(job);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    const waited = performance.now() - this.queue[0].enqueued;
    const kind = this.queue[0].kind;
    const ready = this.queue.filter((j) => j.kind === kind).length;
    // Admitted images neither queued nor running are being decoded: they join in a moment.
    const decoding = this.admitted - this.queue.length - this.inBatch;
    const window = this.limits.windowMs;
    const due = decoding > 0 ? WINDOW_STRETCH * window : this.lastBatch === 1 ? 0 : window;
    if (this.draining || ready >= this.limits.maxBatch || waited >= due) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      void this.runBatch();
    } else if (!this.timer) {
      // Look again when the window ends, or the stretched one while images are still decoding.
      const next = waited < window ? window : due;
      this.timer = setTimeout(
        () => {
          this.timer = null;
          this.schedule();
        },
        Math.max(0, next - waited),
      );
    }
  }

  private async runBatch(): Promise<void> {
    this.running = true;
    const kind = this.queue[0].kind;
    const batch: Job[] = [];
    for (let i = 0; i < this.queue.length && batch.length < this.limits.maxBatch; ) {
      if (this.queue[i].kind === kind) batch.push(...this.queue.splice(i, 1));
      else i++;
    }
    this.inBatch = batch.length;
    this.lastBatch = batch.length;
    const start = performance.now();
    try {
      const outputs = await this.runners.get(kind)!(batch.map((j) => j.input));
      for (const [i, job] of batch.entries()) job.resolve(outputs[i]);
      this.rate = (1000 * batch.length) / Math.max(1, performance.now() - start);
    } catch (err) {
      for (const job of batch) job.reject(err);
    } finally {
      this.running = false;
      this.inBatch = 0;
      // Let the answers go out and new requests in before the next batch.
      setImmediate(() => this.schedule());
    }
  }
}
