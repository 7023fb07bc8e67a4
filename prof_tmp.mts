import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { ModelConfigSchema } from "./src/config/schema.ts";
import { createModel } from "./src/model/vision_transformer.ts";
import { createOptimizer } from "./src/train/optimizer.ts";
import { classificationCriterion } from "./src/train/losses.ts";
import { trainStep, disposeStepResult } from "./src/train/step.ts";
import { OptimizerConfigSchema } from "./src/config/schema.ts";
await tf.setBackend(process.argv[2] ?? "wasm");
const cfg = { ...ModelConfigSchema.parse({ img_size: 32, patch_size: 4, embed_dim: 96, depth: 4, num_heads: 3, mlp_ratio: 2, drop_path_rate: 0 }), num_classes: 10 };
const model = createModel(cfg, { seed: 0 });
const params = model.namedParameters();
const state = { model, params, optimizer: createOptimizer(params, OptimizerConfigSchema.parse({}), model.noWeightDecay()), criterion: classificationCriterion(0.1), schedule: () => 1e-3, clipGradNorm: null, ema: null, inputShape: [32, 32, 3] as [number, number, number], numClasses: 10, seed: 0, accumSteps: 1 };
const B = 64;
const batch = { images: new Float32Array(B * 32 * 32 * 3).map(() => Math.random()), labels: Int32Array.from({ length: B }, (_, i) => i % 10), size: B };
for (let i = 0; i < 6; i++) {
  const t0 = performance.now(); const c0 = process.cpuUsage();
  const r = trainStep(state as any, [batch], i); r.loss.dataSync(); disposeStepResult(r);
  const c = process.cpuUsage(c0);
  console.log(`step ${i}: wall ${(performance.now() - t0).toFixed(0)} ms, cpu ${((c.user + c.system) / 1000).toFixed(0)} ms`);
}
const t0 = performance.now(); const c0 = process.cpuUsage();
tf.tidy(() => (model.forward(tf.tensor4d(batch.images, [B, 32, 32, 3]), { training: false }) as tf.Tensor).dataSync());
const c = process.cpuUsage(c0);
console.log(`eval fwd: wall ${(performance.now() - t0).toFixed(0)} ms cpu ${((c.user + c.system) / 1000).toFixed(0)} ms`);
const info = await tf.profile(() => { const r = trainStep(state as any, [batch], 9); r.loss.dataSync(); disposeStepResult(r); });
const by = new Map<string, { ms: number; n: number }>();
for (const k of info.kernels) { const e = by.get(k.name) ?? { ms: 0, n: 0 }; e.ms += k.kernelTimeMs as number; e.n++; by.set(k.name, e); }
console.log([...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15).map(([n, e]) => `${n} ${e.ms.toFixed(0)}ms x${e.n}`).join("\n"));
