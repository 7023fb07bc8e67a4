// What the bench reports about onnxruntime's device: the adapter, and where the config's inference and
// training graphs run (src/engines/onnxruntime/placement.ts), so a row on a GPU says which ops fell
// back to the CPU provider and how many copies a run makes between the two.
import type { Config } from "../src/config/index.js";
import { describeAdapter } from "../src/engines/onnxruntime/device.js";
import { inferenceModel } from "../src/engines/onnxruntime/inference.js";
import { describePlacement, placeNodes } from "../src/engines/onnxruntime/placement.js";
import { buildTrainGraph } from "../src/engines/onnxruntime/train_graph.js";
import type { OnnxruntimeChoice } from "../src/engines/select.js";
import type { VitConfig } from "../src/model/vision_transformer.js";

export interface DeviceReport {
  device: string;
  adapter: string | null;
  /** On cpu: nothing to place. */
  infer_placement?: string;
  train_placement?: string;
}

export async function deviceReport(engine: OnnxruntimeChoice, config: Config): Promise<DeviceReport> {
  const report: DeviceReport = {
    device: engine.device,
    adapter: engine.adapter ? describeAdapter(engine.adapter) : null,
  };
  if (engine.device === "cpu") return report;
  const model = config.model as VitConfig;
  const train = buildTrainGraph(
    {
      model,
      batch: 1,
      optimizer: config.train.optimizer,
      noWeightDecay: new Set(),
      clipGradNorm: config.train.clip_grad_norm,
      distill: null,
    },
    "step",
  );
  const infer = inferenceModel(model, { weights: null, heads: "mean" });
  report.infer_placement = describePlacement(await placeNodes(engine.ort, infer.bytes, engine));
  report.train_placement = describePlacement(await placeNodes(engine.ort, train.bytes, engine));
  return report;
}
