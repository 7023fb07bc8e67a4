/**
 * Where onnxruntime puts a graph's nodes: a device's provider (WebGPU, CUDA) takes the nodes it
 * has kernels for and the CPU provider the rest, with a copy between them each time the data
 * crosses. onnxruntime-node's API does not tell the assignment; its profiler does (each node's
 * kernel event names its provider), so a graph is run once, on zeros, with profiling on.
 * `vit info --verbose` and `npm run bench` print what falls back.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type * as Ort from "onnxruntime-node";
import { createSession, type SessionOptions } from "./runtime.js";
import type { OrtModule } from "./session.js";

export interface Placement {
  /** Nodes run by the device's provider. */
  onDevice: number;
  /** Op type -> how many of its nodes the CPU provider runs (all of them on device cpu). */
  onCpu: Map<string, number>;
  /** Copies between host and device memory (MemcpyToHost / MemcpyFromHost nodes) per run. */
  copies: number;
}

interface ProfileEvent {
  cat?: string;
  name?: string;
  args?: { provider?: string; op_name?: string };
}

/** Runs `model` once on zeros (symbolic dims as 1) on `opts.device` and reads where each node ran. */
export async function placeNodes(
  ort: OrtModule,
  model: Uint8Array,
  opts: SessionOptions,
): Promise<Placement> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-placement-"));
  try {
    const session = await createSession(ort, model, { ...opts, profile: path.join(dir, "run") });
    try {
      await session.run(zeroFeeds(ort, session));
    } finally {
      session.endProfiling();
      await session.release();
    }
    const file = fs.readdirSync(dir).find((f) => f.endsWith(".json"));
    if (!file) throw new Error("onnxruntime wrote no profile");
    return placementOf(JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")) as ProfileEvent[]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The profile's node events, one per node and run: `<node>_kernel_time` with the provider. */
export function placementOf(events: readonly ProfileEvent[]): Placement {
  const placement: Placement = { onDevice: 0, onCpu: new Map(), copies: 0 };
  for (const e of events) {
    const op = e.args?.op_name;
    const provider = e.args?.provider;
    if (e.cat !== "Node" || !e.name?.endsWith("_kernel_time") || !op || !provider) continue;
    if (op === "MemcpyToHost" || op === "MemcpyFromHost") placement.copies++;
    else if (provider === "CPUExecutionProvider") placement.onCpu.set(op, (placement.onCpu.get(op) ?? 0) + 1);
    else placement.onDevice++;
  }
  return placement;
}

/** "all 412 nodes on the device" or "388 on the device; on the CPU: FusedMatMul x10, Sum x5; 66 copies". */
export function describePlacement(p: Placement): string {
  if (p.onCpu.size === 0) return `all ${p.onDevice} nodes on the device`;
  const cpu = [...p.onCpu].map(([op, n]) => `${op} x${n}`).join(", ");
  return `${p.onDevice} nodes on the device; on the CPU: ${cpu}; ${p.copies} copies between them`;
}

function zeroFeeds(ort: OrtModule, session: Ort.InferenceSession): Record<string, Ort.Tensor> {
  const feeds: Record<string, Ort.Tensor> = {};
  for (const m of session.inputMetadata) {
    if (!m.isTensor) throw new Error(`placement: input ${m.name} is not a tensor`);
    const dims = m.shape.map((d) => (typeof d === "number" ? d : 1));
    const size = dims.reduce((a, b) => a * b, 1);
    feeds[m.name] =
      m.type === "int64"
        ? new ort.Tensor("int64", new BigInt64Array(size), dims)
        : m.type === "int32"
          ? new ort.Tensor("int32", new Int32Array(size), dims)
          : new ort.Tensor("float32", new Float32Array(size), dims);
  }
  return feeds;
}
