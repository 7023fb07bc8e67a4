// Where an onnxruntime inference batch spends its time, op type by op type, from onnxruntime's own
// profiler (a JSON trace of every node's kernel time):
//
//   npx tsx bench/ort_profile.ts [--config vit-ti16-224] [--threads N] [--runs 3]
//
// Prints a table on stdout: per op type, its milliseconds per batch, share of all kernel time, and
// node count. The session is the one `vit eval` / `vit predict` make (src/engines/onnxruntime/
// inference.ts through createSession), on random weights and images of the bench config's size.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { inferenceModel } from "../src/engines/onnxruntime/inference.js";
import { createSession } from "../src/engines/onnxruntime/runtime.js";
import { selectEngine } from "../src/engines/select.js";
import { createModel } from "../src/model/vision_transformer.js";
import { alignTable } from "../src/plot/table.js";
import { benchConfig, CONFIGS } from "./configs.js";

const { values: args } = parseArgs({
  options: {
    config: { type: "string", default: "vit-ti16-224" },
    threads: { type: "string" },
    runs: { type: "string", default: "3" },
  },
});
const spec = CONFIGS.find((c) => c.name === args.config);
if (!spec) throw new Error(`--config ${args.config}: one of ${CONFIGS.map((c) => c.name).join(", ")}`);

const engine = await selectEngine("onnxruntime", {
  threads: args.threads === undefined ? null : Number(args.threads),
});
if (engine.engine !== "onnxruntime") throw new Error("unreachable: onnxruntime was asked for by name");
const cfg = benchConfig(spec).model;
const model = createModel(cfg, { seed: 0 });
const graph = inferenceModel(cfg, { weights: model.stateDict(), heads: "mean" });
model.dispose();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-ort-profile-"));
const session = await createSession(engine.ort, graph.bytes, { ...engine, profile: path.join(dir, "p") });
const images = new Float32Array(spec.batch * cfg.img_size * cfg.img_size * cfg.in_chans).map(
  (_, i) => Math.sin(i) * 0.5,
);
const x = new engine.ort.Tensor("float32", images, [spec.batch, cfg.img_size, cfg.img_size, cfg.in_chans]);
const runs = Number(args.runs);
await session.run({ [graph.input]: x }); // warm-up, left out below
const t0 = performance.now();
for (let i = 0; i < runs; i++) await session.run({ [graph.input]: x });
const wallMs = (performance.now() - t0) / runs;
session.endProfiling();
await session.release();

interface TraceEvent {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string };
}
const [file] = fs.readdirSync(dir);
const events = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")) as TraceEvent[];
fs.rmSync(dir, { recursive: true, force: true });
// Node kernel times of the timed runs: the trace holds warm-up + runs, in order, per node.
const kernels = events.filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time"));
const timed = kernels.slice(kernels.length - (kernels.length / (runs + 1)) * runs);
const byOp = new Map<string, { us: number; nodes: Set<string> }>();
for (const e of timed) {
  const op = e.args?.op_name ?? "?";
  const entry = byOp.get(op) ?? { us: 0, nodes: new Set() };
  entry.us += e.dur;
  entry.nodes.add(e.name);
  byOp.set(op, entry);
}
const total = [...byOp.values()].reduce((a, b) => a + b.us, 0);
const rows = [...byOp].sort((a, b) => b[1].us - a[1].us);
const fmt = (x: number) => x.toFixed(1);
process.stdout.write(
  `${spec.name}, batch ${spec.batch}, ${engine.threads} intra-op thread(s), load average ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}\n` +
    `wall ${fmt(wallMs)} ms per batch (${fmt((spec.batch * 1000) / wallMs)} img/s), kernels ${fmt(total / 1000 / runs)} ms\n` +
    `${alignTable([
      ["op", "ms/batch", "share", "nodes"],
      ...rows.map(([op, { us, nodes }]) => [
        op,
        fmt(us / 1000 / runs),
        `${((100 * us) / total).toFixed(1)}%`,
        String(nodes.size),
      ]),
    ])}\n`,
);
