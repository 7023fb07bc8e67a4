/**
 * The device onnxruntime runs on (runtime.device, --device; docs/webgpu.md):
 *
 *   cpu     onnxruntime's own CPU kernels
 *   webgpu  onnxruntime-node's WebGPU provider: Dawn, built into its native library, on Vulkan
 *           (Linux), Metal (macOS) or D3D12 (Windows). Nothing to install beyond a GPU driver.
 *   cuda    onnxruntime's CUDA provider, where the user installed it (untested here)
 *   auto    webgpu when the machine has a hardware WebGPU adapter, else cpu
 *
 * onnxruntime-node says nothing about the adapter its Dawn picks (no adapter info in its JS API,
 * nor in its verbose log). So the adapter is asked of the `webgpu` npm package (Dawn's own Node
 * bindings, prebuilt inside the npm package, an optional dependency): the same Dawn, asked the
 * way onnxruntime's provider asks it (high-performance, default backend), sees the same adapter.
 */
import type { DeviceName } from "../../config/schema.js";
import { UsageError } from "../../errors.js";
import { defaultImporter, firstLine, type Importer, importPackage } from "../tfjs/select.js";

export const WEBGPU_PACKAGE = "webgpu";

/** A device a session runs on: runtime.device once auto is decided. */
export type RunDevice = Exclude<DeviceName, "auto">;

export interface WebgpuAdapter {
  /** Dawn's description: "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)", "NVIDIA GeForce RTX 4090", ... */
  description: string;
  vendor: string;
  architecture: string;
  /** The CPU drawing as a GPU (llvmpipe, SwiftShader, WARP): correct, far slower than onnxruntime's CPU kernels. */
  software: boolean;
}

export interface DeviceChoice {
  device: RunDevice;
  /** The WebGPU adapter, where one was asked for (webgpu, auto); null where none could be found. */
  adapter: WebgpuAdapter | null;
  /** Why auto passed over webgpu, or why the adapter is unknown. */
  note?: string;
}

/** The part of the `webgpu` package used here (its types come from @webgpu/types). */
interface DawnModule {
  create(flags: string[]): {
    requestAdapter(opts: { powerPreference: string }): Promise<{
      info: {
        description?: string;
        vendor?: string;
        architecture?: string;
        device?: string;
        isFallbackAdapter?: boolean;
      };
      isFallbackAdapter?: boolean;
    } | null>;
  };
}

/**
 * A software adapter is told apart by Dawn's `isFallbackAdapter`, which Dawn sets when the driver
 * reports a CPU device: Vulkan's VK_PHYSICAL_DEVICE_TYPE_CPU (Mesa's llvmpipe/lavapipe,
 * SwiftShader), D3D12's software adapter (WARP). Names are checked too, for a Dawn that leaves the
 * flag unset: a hardware adapter never carries these names.
 */
const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|\bwarp\b|microsoft basic render/i;

let adapterProbe: Promise<WebgpuAdapter | string> | undefined;

/**
 * The adapter onnxruntime's WebGPU provider would take, or why there is none. Asked once per
 * process (Dawn enumerates the drivers, ~0.3 s). The importer is for tests.
 */
export function findWebgpuAdapter(importer: Importer = defaultImporter): Promise<WebgpuAdapter | string> {
  if (importer !== defaultImporter) return probeAdapter(importer);
  adapterProbe ??= probeAdapter(importer);
  return adapterProbe;
}

async function probeAdapter(importer: Importer): Promise<WebgpuAdapter | string> {
  let dawn: DawnModule | undefined;
  const failed = await importPackage(WEBGPU_PACKAGE, async (specifier) => {
    dawn = (await importer(specifier)) as DawnModule;
  });
  if (failed !== undefined || !dawn)
    return `${failed ?? `${WEBGPU_PACKAGE} loaded empty`}, so the adapter is not known`;
  try {
    // onnxruntime's provider asks for high-performance on the platform's default backend.
    const adapter = await dawn.create([]).requestAdapter({ powerPreference: "high-performance" });
    if (!adapter)
      return "no WebGPU adapter (no GPU driver for WebGPU: on Linux a Vulkan driver, see docs/webgpu.md)";
    const info = adapter.info;
    const description = info.description || info.device || info.vendor || "unnamed adapter";
    const fallback = info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false;
    return {
      description,
      vendor: info.vendor ?? "",
      architecture: info.architecture ?? "",
      software: fallback || SOFTWARE_NAMES.test(`${description} ${info.device ?? ""}`),
    };
  } catch (err) {
    return `WebGPU adapter query failed: ${firstLine(err)}`;
  }
}

/** One line for summaries and `vit info`: "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6), software". */
export function describeAdapter(adapter: WebgpuAdapter): string {
  return `${adapter.description}, ${adapter.software ? "software (the CPU drawing as a GPU)" : "hardware"}`;
}

/**
 * runtime.device decided. auto takes webgpu only on a hardware adapter: a software one is the CPU
 * again, through a graphics driver, many times slower than onnxruntime's CPU kernels, so it is
 * used only when asked for by name (as the tests do, for correctness).
 */
export async function chooseDevice(
  requested: DeviceName,
  importer: Importer = defaultImporter,
): Promise<DeviceChoice> {
  if (requested === "cpu" || requested === "cuda") return { device: requested, adapter: null };
  const found = await findWebgpuAdapter(importer);
  if (requested === "webgpu") {
    // Without the webgpu package the adapter is unknown, but onnxruntime's Dawn may still find one.
    return typeof found === "string"
      ? { device: "webgpu", adapter: null, note: found }
      : { device: "webgpu", adapter: found };
  }
  if (typeof found === "string")
    return { device: "cpu", adapter: null, note: `webgpu passed over: ${found}` };
  if (found.software) {
    return {
      device: "cpu",
      adapter: found,
      note: "webgpu passed over: the adapter is software (--device webgpu uses it anyway)",
    };
  }
  return { device: "webgpu", adapter: found };
}

/**
 * The session options that put it on `device`: its execution providers in order of preference
 * (nodes the first has no kernel for go to the next; the CPU provider takes the rest: ./placement.ts
 * lists them), and onnxruntime's log at errors only, as its warning that some nodes went to the
 * CPU would otherwise print for every session (`vit info --verbose` says which).
 */
export function deviceSessionOptions(device: RunDevice): {
  executionProviders: string[];
  logSeverityLevel: 3;
} {
  return { executionProviders: device === "cpu" ? ["cpu"] : [device, "cpu"], logSeverityLevel: 3 };
}

/** The error for a session the WebGPU provider could not take, naming what it needs. */
export function webgpuError(err: unknown): UsageError {
  return new UsageError(
    `runtime.device webgpu: onnxruntime's WebGPU provider could not start (${firstLine(err)}); ` +
      "it needs a GPU driver with Vulkan (Linux), Metal (macOS) or D3D12 (Windows): see docs/webgpu.md, or use --device cpu",
  );
}
