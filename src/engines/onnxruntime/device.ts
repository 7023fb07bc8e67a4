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
 * bindings, prebuilt inside the npm package, an optional dependency), in a child process: the same
 * Dawn, asked the way onnxruntime's provider asks it (high-performance, default backend), sees the
 * same adapter.
 */
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import type { DeviceName } from "../../config/schema.js";
import { UsageError } from "../../errors.js";
import { firstLine } from "../tfjs/select.js";

const WEBGPU_PACKAGE = "webgpu";

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

/** What Dawn says of an adapter (GPUAdapterInfo). */
export interface AdapterInfo {
  description?: string;
  vendor?: string;
  architecture?: string;
  device?: string;
  isFallbackAdapter?: boolean;
}

/** Asks Dawn for its adapter: its info, null where there is none, or why it could not be asked. */
export type AdapterQuery = () => Promise<AdapterInfo | null | string>;

/**
 * A software adapter is told apart by Dawn's `isFallbackAdapter`, which Dawn sets when the driver
 * reports a CPU device: Vulkan's VK_PHYSICAL_DEVICE_TYPE_CPU (Mesa's llvmpipe/lavapipe,
 * SwiftShader), D3D12's software adapter (WARP). Names are checked too, for a Dawn that leaves the
 * flag unset: a hardware adapter never carries these names.
 */
const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|\bwarp\b|microsoft basic render/i;

/**
 * The child that asks: Dawn prints warnings to stderr while it sizes a software adapter's limits,
 * which a child keeps out of the command's own output (and the process keeps one Dawn, onnxruntime's).
 * onnxruntime's provider asks for high-performance on the platform's default backend; so does this.
 */
const QUERY_SCRIPT = `
const { create } = await import(process.argv[1]);
const adapter = await create([]).requestAdapter({ powerPreference: "high-performance" });
const info = adapter && adapter.info;
const keys = ["description", "vendor", "architecture", "device", "isFallbackAdapter"];
process.stdout.write(JSON.stringify(info ? Object.fromEntries(keys.map((k) => [k, info[k] ?? adapter[k]])) : null));
process.exit(0);
`;

/** Dawn through the `webgpu` npm package, in a child process (QUERY_SCRIPT). */
export const dawnQuery: AdapterQuery = async () => {
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve(WEBGPU_PACKAGE);
  } catch {
    return `${WEBGPU_PACKAGE} not installed (npm install ${WEBGPU_PACKAGE}), so the adapter is not known`;
  }
  const run = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    execFile(
      process.execPath,
      ["--input-type=module", "-e", QUERY_SCRIPT, pathToFileURL(entry).href],
      { timeout: 30_000 },
      (error, out, err) =>
        resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, out, err }),
    );
  });
  if (run.code !== 0) {
    const reason =
      run.err
        .split("\n")
        .filter((l) => l && !l.startsWith("Warning:"))
        .pop() ?? `exit code ${run.code}`;
    return `${WEBGPU_PACKAGE} failed to ask for an adapter: ${reason}`;
  }
  try {
    return JSON.parse(run.out.trim().split("\n").pop() ?? "") as AdapterInfo | null;
  } catch {
    return `${WEBGPU_PACKAGE} answered with no adapter description: ${firstLine(run.out) || "(nothing)"}`;
  }
};

let adapterProbe: Promise<WebgpuAdapter | string> | undefined;

/**
 * The adapter onnxruntime's WebGPU provider would take, or why there is none. Asked once per
 * process (Dawn enumerates the drivers: about half a second). `query` is for tests.
 */
export function findWebgpuAdapter(query: AdapterQuery = dawnQuery): Promise<WebgpuAdapter | string> {
  if (query !== dawnQuery) return probeAdapter(query);
  adapterProbe ??= probeAdapter(query);
  return adapterProbe;
}

async function probeAdapter(query: AdapterQuery): Promise<WebgpuAdapter | string> {
  const info = await query();
  if (typeof info === "string") return info;
  if (!info)
    return "no WebGPU adapter (no GPU driver for WebGPU: on Linux a Vulkan driver, see docs/webgpu.md)";
  const description = info.description || info.device || info.vendor || "unnamed adapter";
  return {
    description,
    vendor: info.vendor ?? "",
    architecture: info.architecture ?? "",
    software: info.isFallbackAdapter === true || SOFTWARE_NAMES.test(`${description} ${info.device ?? ""}`),
  };
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
  query: AdapterQuery = dawnQuery,
): Promise<DeviceChoice> {
  if (requested === "cpu" || requested === "cuda") return { device: requested, adapter: null };
  const found = await findWebgpuAdapter(query);
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
