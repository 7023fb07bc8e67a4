/**
 * A loader worker thread: builds the batches the main thread asks for, one at a time, and sends
 * them back with their pixel arrays transferred (not copied). Its own event loop keeps decoding
 * while the main thread is busy in a synchronous training step.
 */
import { parentPort, workerData } from "node:worker_threads";
import { DataError } from "../errors.js";
import { BatchBuilder, type BuiltBatch, type CachedImage, type LoaderSpec } from "./batch.js";

export interface WorkerInit {
  paths: string[];
  labels: Int32Array;
  spec: LoaderSpec;
}

export type WorkerRequest =
  | { type: "batch"; id: number; epoch: number; step: number }
  | { type: "cache"; entries: [number, CachedImage][] };

export type WorkerReply =
  | { id: number; batch: BuiltBatch }
  | { id: number; error: { message: string; isDataError: boolean } };

const port = parentPort;
if (port) {
  const init = workerData as WorkerInit;
  const builder = new BatchBuilder(init.paths, init.labels, init.spec);
  let queue = Promise.resolve();
  port.on("message", (msg: WorkerRequest) => {
    if (msg.type === "cache") {
      builder.addToCache(msg.entries);
      return;
    }
    queue = queue.then(async () => {
      try {
        const batch = await builder.build(msg.epoch, msg.step);
        const reply: WorkerReply = { id: msg.id, batch };
        port.postMessage(reply, [
          batch.images.buffer,
          batch.labels.buffer,
          batch.indices.buffer,
        ] as ArrayBuffer[]);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        const reply: WorkerReply = { id: msg.id, error: { message, isDataError: err instanceof DataError } };
        port.postMessage(reply);
      }
    });
  });
}
