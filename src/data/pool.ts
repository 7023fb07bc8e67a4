/**
 * The loader's worker threads. A request goes to the least busy worker; a worker holds the
 * process open only while it has work, so a loader nobody closed does not keep Node alive.
 */
import { Worker } from "node:worker_threads";
import { DataError } from "../errors.js";
import type { BuiltBatch, CachedImage } from "./batch.js";
import type { WorkerInit, WorkerReply, WorkerRequest } from "./worker.js";

interface Slot {
  worker: Worker;
  pending: Map<number, { resolve: (b: BuiltBatch) => void; reject: (e: Error) => void }>;
}

/**
 * From the TypeScript sources (tests, tsx) the worker needs tsx's loader registered in its own
 * thread; from the compiled package it is a plain .js module.
 */
function spawn(init: WorkerInit): Worker {
  const here = import.meta.url;
  if (!here.endsWith(".ts")) return new Worker(new URL("./worker.js", here), { workerData: init });
  const entry = new URL("./worker.ts", here).href;
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true, workerData: init });
}

export class WorkerPool {
  private readonly slots: Slot[];
  private nextId = 0;
  private failure: Error | null = null;

  constructor(count: number, init: WorkerInit) {
    this.slots = Array.from({ length: count }, () => {
      const slot: Slot = { worker: spawn(init), pending: new Map() };
      slot.worker.unref();
      slot.worker.on("message", (reply: WorkerReply) => this.settle(slot, reply));
      slot.worker.on("error", (err) => this.fail(err));
      slot.worker.on("exit", (code) => this.fail(new Error(`data loader worker exited with code ${code}`)));
      return slot;
    });
  }

  get size(): number {
    return this.slots.length;
  }

  run(epoch: number, step: number): Promise<BuiltBatch> {
    if (this.failure) return Promise.reject(this.failure);
    const slot = this.slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.ref();
      const msg: WorkerRequest = { type: "batch", id, epoch, step };
      slot.worker.postMessage(msg);
    });
  }

  /** Share newly cached images with every worker (shared memory: nothing is copied). */
  share(entries: [number, CachedImage][]): void {
    if (entries.length === 0) return;
    const msg: WorkerRequest = { type: "cache", entries };
    for (const s of this.slots) s.worker.postMessage(msg);
  }

  async close(): Promise<void> {
    this.failure ??= new Error("data loader closed");
    // A worker still building a prefetched batch takes a while to end, and terminate()'s promise does
    // not hold Node's event loop open (an idle worker is unref'd): keep it open until they have ended.
    const keepAlive = setInterval(() => {}, 60_000);
    try {
      await Promise.all(this.slots.map((s) => s.worker.terminate()));
    } finally {
      clearInterval(keepAlive);
    }
  }

  private settle(slot: Slot, reply: WorkerReply): void {
    const p = slot.pending.get(reply.id);
    if (!p) return;
    slot.pending.delete(reply.id);
    if (slot.pending.size === 0) slot.worker.unref();
    if ("batch" in reply) p.resolve(reply.batch);
    else
      p.reject(reply.error.isDataError ? new DataError(reply.error.message) : new Error(reply.error.message));
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (const s of this.slots) {
      for (const p of s.pending.values()) p.reject(err);
      s.pending.clear();
      s.worker.unref();
    }
  }
}
