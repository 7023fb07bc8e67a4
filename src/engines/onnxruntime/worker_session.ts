/**
 * An inference session on its own worker thread. onnxruntime-node's `run` computes on the thread
 * that calls it (its promise only defers the call to the next turn of the event loop), so a session
 * on the main thread stops everything else for a whole forward pass: no request is read, no image
 * decoded, no answer sent. On a worker, the forward pass overlaps all of that: `vit serve` batches
 * stopped forming while the model ran (docs/serve.md). The session is made in the worker with
 * ./runtime.ts's options, like every other session.
 */
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { UsageError } from "../../errors.js";
import type { SessionOptions } from "./runtime.js";

export interface FloatTensor {
  data: Float32Array;
  dims: readonly number[];
}

/** A feed as a place in the run's input buffer. */
export interface BufferFeed {
  offset: number;
  length: number;
  dims: readonly number[];
}

export type WorkerRequest =
  | { kind: "run"; id: number; input: ArrayBuffer; feeds: Record<string, BufferFeed> }
  | { kind: "release" };

export type WorkerReply =
  | { kind: "ready" }
  /** `input` is the run's input buffer, handed back for the next run. */
  | { kind: "ran"; id: number; outputs: Record<string, FloatTensor>; input: ArrayBuffer }
  /** Without an id: the session could not be made. */
  | { kind: "failed"; id?: number; error: { message: string; usage: boolean } };

export interface WorkerSession {
  run(feeds: Record<string, FloatTensor>): Promise<Record<string, FloatTensor>>;
  release(): Promise<void>;
}

/**
 * The worker runs ./session_worker, beside this file: .js when built. Run from source (.ts, under
 * tsx), it registers tsx first, as Node 20 does not carry `--import tsx` into worker threads.
 */
function startWorker(workerData: unknown): Worker {
  const ext = path.extname(fileURLToPath(import.meta.url));
  const entry = new URL(`./session_worker${ext}`, import.meta.url);
  if (ext !== ".ts") return new Worker(entry, { workerData });
  const tsx = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const code = `import(${tsx}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(code, { eval: true, workerData });
}

export function createWorkerSession(model: Uint8Array, options: SessionOptions): Promise<WorkerSession> {
  const worker = startWorker({ model, options });
  const pending = new Map<
    number,
    { resolve: (o: Record<string, FloatTensor>) => void; reject: (e: Error) => void }
  >();
  let nextId = 0;
  let failed: Error | null = null;
  // Inputs travel in a buffer handed to the worker and back with the outputs, for the next run of
  // the same size: a forward pass's input is megabytes. Only the same size: onnxruntime-node ran a
  // batch of one twice as slow from a view into a batch-32 buffer as from its own buffer.
  let spare: ArrayBuffer | null = null;
  const exited = new Promise<void>((r) => worker.once("exit", () => r()));

  // An idle worker must not keep the process alive; one with runs in flight must.
  const settle = (id: number) => {
    pending.delete(id);
    if (pending.size === 0) worker.unref();
  };
  const failAll = (err: Error) => {
    failed ??= err;
    for (const [id, p] of pending) {
      p.reject(err);
      settle(id);
    }
  };

  return new Promise((resolve, reject) => {
    worker.on("message", (reply: WorkerReply) => {
      if (reply.kind === "ready") {
        worker.unref();
        resolve(session);
      } else if (reply.kind === "ran") {
        spare = reply.input;
        pending.get(reply.id)?.resolve(reply.outputs);
        settle(reply.id);
      } else {
        const err = reply.error.usage ? new UsageError(reply.error.message) : new Error(reply.error.message);
        if (reply.id === undefined) {
          void worker.terminate();
          reject(err);
        } else {
          pending.get(reply.id)?.reject(err);
          settle(reply.id);
        }
      }
    });
    worker.on("error", (err) => {
      failAll(err);
      reject(err);
    });
    worker.on("exit", (code) => {
      const err = new Error(`the onnxruntime worker thread exited (code ${code})`);
      failAll(err);
      reject(err);
    });

    const session: WorkerSession = {
      run(feeds) {
        if (failed) return Promise.reject(failed);
        // Copied now, so the caller may reuse its arrays once this returns.
        const floats = Object.values(feeds).reduce((n, t) => n + t.data.length, 0);
        const input = spare && spare.byteLength === 4 * floats ? spare : new ArrayBuffer(4 * floats);
        if (input === spare) spare = null;
        const placed: Record<string, BufferFeed> = {};
        let offset = 0;
        for (const [name, t] of Object.entries(feeds)) {
          new Float32Array(input, 4 * offset, t.data.length).set(t.data);
          placed[name] = { offset, length: t.data.length, dims: t.dims };
          offset += t.data.length;
        }
        const id = nextId++;
        return new Promise((res, rej) => {
          pending.set(id, { resolve: res, reject: rej });
          worker.ref();
          worker.postMessage({ kind: "run", id, input, feeds: placed } satisfies WorkerRequest, [input]);
        });
      },
      async release() {
        failed ??= new Error("the onnxruntime session was released");
        worker.ref();
        worker.postMessage({ kind: "release" } satisfies WorkerRequest);
        await exited;
      },
    };
  });
}
