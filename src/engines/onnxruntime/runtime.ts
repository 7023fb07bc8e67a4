/**
 * onnxruntime-node, the native engine's runtime: loaded by dynamic import (it is an optional
 * dependency, and its native binding loads at import), and the one place sessions are made, so
 * every session of a run gets the same threads and execution provider.
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import type * as Ort from "onnxruntime-node";
import { UsageError } from "../../errors.js";
import { firstLine, type Importer, importPackage } from "../tfjs/select.js";
import { type RunDevice, webgpuError } from "./device.js";
import { type OrtModule, sessionOptions } from "./session.js";

export const ORT_PACKAGE = "onnxruntime-node";

/** The loaded package, or why it could not be loaded ("... not installed", "... failed to load: ..."). */
export async function loadOnnxruntime(importer: Importer): Promise<OrtModule | string> {
  let module: unknown;
  const failed = await importPackage(ORT_PACKAGE, async (specifier) => {
    module = await importer(specifier);
  });
  if (failed !== undefined) return failed;
  const ort = module as Partial<OrtModule> | undefined;
  // An ESM import of the CommonJS package gives its exports; a fake in tests may give anything.
  if (typeof ort?.InferenceSession?.create !== "function")
    return `${ORT_PACKAGE} loaded but has no InferenceSession`;
  return ort as OrtModule;
}

export interface SessionOptions {
  /** Intra-op threads (runtime.threads; one per core by default). */
  threads: number;
  device: RunDevice;
  /** A file prefix: onnxruntime's profiler writes every node's time and provider to `<prefix>_<date>.json` (bench/ort_profile.ts, ./placement.ts). */
  profile?: string;
}

/**
 * An inference session for `model` (a serialized ONNX ModelProto), with the training sessions'
 * options (./session.ts); cuda takes the nodes its provider supports and leaves the rest on the CPU.
 */
export async function createSession(
  ort: OrtModule,
  model: Uint8Array,
  opts: SessionOptions,
): Promise<Ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(model, {
      ...sessionOptions(opts.threads, opts.device),
      ...(opts.profile && { enableProfiling: true, profileFilePrefix: opts.profile }),
    });
  } catch (err) {
    if (opts.device === "cuda") {
      throw new UsageError(
        `runtime.device cuda: onnxruntime could not start its CUDA provider (${firstLine(err)}); ` +
          `it needs ${cudaProviderFile()} (installed by ${ORT_PACKAGE}'s postinstall on linux-x64) and CUDA 12`,
      );
    }
    if (opts.device === "webgpu") throw webgpuError(err);
    throw err;
  }
}

/** Where onnxruntime-node keeps its CUDA provider library, which its postinstall downloads (linux-x64). */
export function cudaProviderFile(): string {
  const dir = path.dirname(createRequire(import.meta.url).resolve(`${ORT_PACKAGE}/package.json`));
  return path.join(dir, "bin", "napi-v6", process.platform, process.arch, "libonnxruntime_providers_cuda.so");
}

/** Whether onnxruntime-node's CUDA provider library is on disk (not whether CUDA itself works). */
export function hasCudaProvider(): boolean {
  try {
    return fs.existsSync(cudaProviderFile());
  } catch {
    return false;
  }
}
