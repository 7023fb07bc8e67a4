/**
 * Which engine runs the model (docs/engines.md). Two engines: tfjs (its backends tensorflow,
 * wasm, cpu; src/engines/tfjs/select.ts) and onnxruntime (src/engines/onnxruntime/). `auto` takes the first
 * that starts, in this order:
 *
 *   tensorflow on CUDA (@tensorflow/tfjs-node-gpu)  - a GPU beats any CPU engine
 *   onnxruntime (onnxruntime-node)                  - native CPU kernels, the fastest CPU engine
 *   tensorflow on CPU (@tensorflow/tfjs-node)
 *   wasm, then cpu                                  - always there
 *
 * and reports each one it passed over with why (not installed, failed to load and its message).
 * tfjs-node-gpu loading means its CUDA libraries loaded; tfjs cannot list devices, so a machine
 * with CUDA installed but no GPU gets tensorflow on its CPU.
 * On onnxruntime, tfjs still holds the weights on the host (loading, converting, checkpoints):
 * its cpu backend does that, as it computes nothing heavy.
 */
import * as tf from "@tensorflow/tfjs";
import type { BackendName, DeviceName } from "../config/schema.js";
import { UsageError, VitError } from "../errors.js";
import { chooseDevice, describeAdapter, type RunDevice, type WebgpuAdapter } from "./onnxruntime/device.js";
import { loadOnnxruntime, ORT_PACKAGE } from "./onnxruntime/runtime.js";
import type { OrtModule } from "./onnxruntime/session.js";
import {
  type BackendChoice,
  defaultImporter,
  defaultThreads,
  describeBackend,
  type Importer,
  initBackend,
  NATIVE_PACKAGES,
  silenceTfjs,
  tryTensorflow,
} from "./tfjs/select.js";

export type EngineName = "tfjs" | "onnxruntime";

export interface OnnxruntimeChoice {
  engine: "onnxruntime";
  name: "onnxruntime";
  package: string;
  skipped: BackendChoice["skipped"];
  /** Intra-op threads of every session. */
  threads: number;
  /** runtime.device decided (auto: webgpu on a hardware adapter, else cpu). */
  device: RunDevice;
  /** The WebGPU adapter found for webgpu or auto, or null. */
  adapter: WebgpuAdapter | null;
  /** Why auto passed over webgpu, or why the adapter is unknown. */
  deviceNote?: string;
  /** The loaded package. */
  ort: OrtModule;
}

export type EngineChoice = ({ engine: "tfjs" } & BackendChoice) | OnnxruntimeChoice;

export interface SelectOptions {
  importer?: Importer;
  /** runtime.threads: wasm's and onnxruntime's threads; null or absent: one per core. */
  threads?: number | null;
  /** runtime.device (onnxruntime's execution provider). */
  device?: DeviceName;
  /** Set when the caller runs on tfjs only: why (the error for an explicit onnxruntime). */
  tfjsOnly?: string;
}

/** The engine a backend name belongs to (auto: none yet). */
export function engineOf(name: BackendName): EngineName | null {
  if (name === "auto") return null;
  return name === "onnxruntime" ? "onnxruntime" : "tfjs";
}

/**
 * Starts `name` (or, for auto, the first engine that starts, in the order above) and reports the
 * choice; prints nothing. An engine asked for by name that cannot start is a UsageError.
 */
export async function selectEngine(name: BackendName, opts: SelectOptions = {}): Promise<EngineChoice> {
  const importer = opts.importer ?? defaultImporter;
  const device = opts.device ?? "auto";
  if (device === "webgpu" || device === "cuda") {
    // A device by name is onnxruntime's: auto goes there, a tfjs backend cannot take it.
    if (name === "auto") name = "onnxruntime";
    else if (name !== "onnxruntime") {
      throw new UsageError(`runtime.device ${device} runs on the onnxruntime engine, not on backend ${name}`);
    }
  }
  if (name === "onnxruntime") {
    if (opts.tfjsOnly) throw new UsageError(`backend onnxruntime: ${opts.tfjsOnly}`);
    const started = await startOnnxruntime(importer, opts, []);
    if (typeof started === "string") {
      throw new UsageError(
        `backend onnxruntime is not available (${started}): run \`npm install ${ORT_PACKAGE}\``,
      );
    }
    return started;
  }
  if (name !== "auto" || opts.tfjsOnly) {
    return { engine: "tfjs", ...(await initBackend(name, { importer, threads: opts.threads })) };
  }
  silenceTfjs();
  const skipped: BackendChoice["skipped"] = [];
  const [gpu, ...cpuNative] = NATIVE_PACKAGES;
  const reason = await tryTensorflow(gpu, importer);
  if (reason === undefined) return { engine: "tfjs", name: "tensorflow", package: gpu, skipped };
  skipped.push({ name: "tensorflow", reason });
  const ort = await startOnnxruntime(importer, opts, skipped);
  if (typeof ort !== "string") return ort;
  skipped.push({ name: "onnxruntime", reason: ort });
  const rest = await initBackend("auto", { importer, threads: opts.threads, native: cpuNative });
  return { engine: "tfjs", ...rest, skipped: [...skipped, ...rest.skipped] };
}

/** onnxruntime with tfjs on cpu beside it for host work, or why onnxruntime cannot start. */
async function startOnnxruntime(
  importer: Importer,
  opts: SelectOptions,
  skipped: BackendChoice["skipped"],
): Promise<OnnxruntimeChoice | string> {
  const ort = await loadOnnxruntime(importer);
  if (typeof ort === "string") return ort;
  silenceTfjs();
  if (!(await tf.setBackend("cpu"))) throw new VitError("backend cpu failed to start");
  const { device, adapter, note } = await chooseDevice(opts.device ?? "auto");
  return {
    engine: "onnxruntime",
    name: "onnxruntime",
    package: ORT_PACKAGE,
    skipped,
    threads: opts.threads ?? defaultThreads(),
    device,
    adapter,
    ...(note && { deviceNote: note }),
    ort,
  };
}

/** For summaries: "onnxruntime (2 threads)", "wasm (1 thread)", "onnxruntime (2 threads, webgpu on <adapter>)". */
export function describeEngine(choice: EngineChoice): string {
  const text = describeBackend(choice);
  if (choice.engine !== "onnxruntime" || choice.device === "cpu") return text;
  const adapter = choice.adapter ? ` on ${describeAdapter(choice.adapter)}` : "";
  return `${text.slice(0, -1)}, ${choice.device}${adapter})`;
}

/**
 * What a resumed run starts on when --backend does not say: the engine it was trained on, so a
 * run keeps its meaning. A tfjs run keeps its configured tfjs backend, or picks among tfjs's.
 */
export function resumeSelection(
  recorded: EngineName,
  configured: BackendName,
): { name: BackendName; tfjsOnly?: string } {
  if (recorded === "onnxruntime") return { name: "onnxruntime" };
  if (engineOf(configured) === "tfjs") return { name: configured };
  return {
    name: "auto",
    tfjsOnly: "the run was trained on tfjs (resume it with --backend onnxruntime to switch engines)",
  };
}
