/**
 * The worker thread of ./worker_session.ts: one InferenceSession, made with the same options as
 * every other session (./runtime.ts), running what the owning thread posts, one run at a time.
 */
import { parentPort, workerData } from "node:worker_threads";
import { UsageError } from "../../errors.js";
import { createSession, loadOnnxruntime, type SessionOptions } from "./runtime.js";
import type { WorkerReply, WorkerRequest } from "./worker_session.js";

const port = parentPort!;
const { model, options } = workerData as { model: Uint8Array; options: SessionOptions };

/** An error as data: a UsageError stays one on the other side (it is the user's to fix, not a crash). */
function failure(err: unknown): { message: string; usage: boolean } {
  return { message: err instanceof Error ? err.message : String(err), usage: err instanceof UsageError };
}

const ort = await loadOnnxruntime((specifier) => import(specifier));
if (typeof ort === "string") {
  port.postMessage({ kind: "failed", error: { message: ort, usage: false } } satisfies WorkerReply);
} else {
  try {
    const session = await createSession(ort, model, options);
    port.on("message", async (request: WorkerRequest) => {
      if (request.kind === "release") {
        await session.release();
        port.close();
        return;
      }
      try {
        const feeds = Object.fromEntries(
          Object.entries(request.feeds).map(([name, f]) => [
            name,
            new ort.Tensor("float32", new Float32Array(request.input, 4 * f.offset, f.length), f.dims),
          ]),
        );
        const out = await session.run(feeds);
        const outputs = Object.fromEntries(
          Object.entries(out).map(([name, t]) => [name, { data: t.data as Float32Array, dims: t.dims }]),
        );
        port.postMessage(
          { kind: "ran", id: request.id, outputs, input: request.input } satisfies WorkerReply,
          [request.input],
        );
      } catch (err) {
        port.postMessage({ kind: "failed", id: request.id, error: failure(err) } satisfies WorkerReply);
      }
    });
    port.postMessage({ kind: "ready" } satisfies WorkerReply);
  } catch (err) {
    port.postMessage({ kind: "failed", error: failure(err) } satisfies WorkerReply);
  }
}
