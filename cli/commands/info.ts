/** `vit info` / `vit doctor`: which engine runs here, why the faster ones do not, and versions. */
import os from "node:os";
import type { Command } from "commander";
import type { BackendName, DeviceName } from "../../src/config/schema.js";
import type { OnnxruntimeChoice } from "../../src/engines/select.js";
import { VERSION } from "../../src/version.js";
import { backendOption, deviceOption, threadsOption } from "../options.js";

/** --verbose places this model's graphs: the quickstart's, small enough for seconds on a software device. */
const PLACEMENT_MODEL = "vit_micro_patch8_32";

export function register(program: Command): void {
  program
    .command("info")
    .alias("doctor")
    .description("show the engine --backend auto picks, why faster ones were skipped, and versions")
    .addOption(backendOption("auto"))
    .addOption(threadsOption("one per core"))
    .addOption(deviceOption())
    .action(async function (this: Command) {
      const opts = this.optsWithGlobals<{
        backend: BackendName;
        threads?: number;
        device?: DeviceName;
        verbose?: boolean;
      }>();
      process.stdout.write(await report(opts));
    });
}

async function report(opts: {
  backend: BackendName;
  threads?: number;
  device?: DeviceName;
  verbose?: boolean;
}): Promise<string> {
  const requested = opts.backend;
  // Loaded here, not at the top: tfjs takes a while to import and `vit --help` should not wait for it.
  const tf = await import("@tensorflow/tfjs");
  const backend = await import("../../src/engines/tfjs/select.js");
  const { selectEngine } = await import("../../src/engines/select.js");
  const ort = await import("../../src/engines/onnxruntime/runtime.js");
  const dev = await import("../../src/engines/onnxruntime/device.js");
  const choice = await selectEngine(requested, { threads: opts.threads, device: opts.device });
  const rows: [string, string][] = [
    ["vit", VERSION],
    ["node", `${process.version} (${process.platform} ${process.arch}, ${os.availableParallelism()} cores)`],
    ["tfjs", tf.version.tfjs],
    ["engine", choice.engine],
    [
      "backend",
      `${choice.name}${choice.package ? ` (${choice.package})` : ""}, chosen by --backend ${requested}`,
    ],
    ...choice.skipped.map((s, i): [string, string] => [i === 0 ? "skipped" : "", `${s.name}: ${s.reason}`]),
  ];
  if (choice.engine === "onnxruntime") {
    rows.push([
      "onnxruntime",
      `${choice.ort.env.versions.node ?? "(version unknown)"}, ${choice.threads} intra-op thread(s) (--threads), ` +
        `device ${choice.device}, chosen by --device ${opts.device ?? "auto"}`,
    ]);
    if (choice.adapter) rows.push(["adapter", dev.describeAdapter(choice.adapter)]);
    if (choice.deviceNote) rows.push(["", choice.deviceNote]);
    if (opts.verbose) rows.push(...(await placementRows(choice)));
  }
  if (choice.name === "wasm") {
    const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
    rows.push(["wasm", `SIMD ${simd ? "yes" : "no"}, ${choice.threads} thread(s) (--threads)`]);
    if (choice.note) rows.push(["", choice.note]);
  }
  if (choice.name === "tensorflow") {
    // tfjs-node's backend exposes its native binding; the version is the libtensorflow it loaded.
    const binding = (tf.backend() as { binding?: { TF_Version?: string } }).binding;
    rows.push(["tensorflow", `libtensorflow ${binding?.TF_Version ?? "(version unknown)"}`]);
  }
  if (choice.engine !== "onnxruntime") {
    const found = await dev.findWebgpuAdapter();
    rows.push([
      "webgpu",
      `${typeof found === "string" ? found : dev.describeAdapter(found)} (--backend onnxruntime --device webgpu)`,
    ]);
  }
  rows.push([
    "cuda",
    `onnxruntime's CUDA provider ${ort.hasCudaProvider() ? "is installed" : "is not installed"} ` +
      `(${ort.ORT_PACKAGE}'s postinstall downloads it on linux-x64; --device cuda, untested here)`,
  ]);
  rows.push([
    "tensorflow",
    `${backend.NATIVE_PACKAGES[0]} needs ${backend.TENSORFLOW_REQUIREMENTS} ` +
      `(install it, or ${backend.NATIVE_PACKAGES[1]} for CPU, with npm install)`,
  ]);
  return rows.map(([label, text]) => `${label.padEnd(12)}${text}\n`).join("");
}

/**
 * --verbose on onnxruntime: where the quickstart model's inference and training graphs run on the
 * chosen device, and which ops fall back to the CPU provider (src/engines/onnxruntime/placement.ts).
 */
async function placementRows(choice: OnnxruntimeChoice): Promise<[string, string][]> {
  const { findPreset } = await import("../../src/config/presets.js");
  const { ModelConfigSchema, OptimizerConfigSchema } = await import("../../src/config/schema.js");
  const { inferenceModel } = await import("../../src/engines/onnxruntime/inference.js");
  const { buildTrainGraph } = await import("../../src/engines/onnxruntime/train_graph.js");
  const { placeNodes, describePlacement } = await import("../../src/engines/onnxruntime/placement.js");
  const preset = findPreset(PLACEMENT_MODEL)!;
  const model = { ...ModelConfigSchema.parse(preset.model), num_classes: preset.num_classes };
  const graphs: [string, Uint8Array][] = [
    ["inference", inferenceModel(model, { weights: null, heads: "mean" }).bytes],
    [
      "training",
      buildTrainGraph(
        {
          model,
          batch: 1,
          optimizer: OptimizerConfigSchema.parse({}),
          noWeightDecay: new Set(),
          clipGradNorm: 1,
          distill: null,
        },
        "step",
      ).bytes,
    ],
  ];
  const rows: [string, string][] = [];
  for (const [what, bytes] of graphs) {
    const placement = await placeNodes(choice.ort, bytes, choice);
    rows.push([
      rows.length === 0 ? "placement" : "",
      `${PLACEMENT_MODEL} ${what}: ${describePlacement(placement)}`,
    ]);
  }
  return rows;
}
