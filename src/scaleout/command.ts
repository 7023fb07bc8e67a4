/**
 * `vit timm-command`: the `torchrun ... train.py ...` line that trains a config's run with timm
 * 1.0.x on N GPUs x M nodes, and the table that says, key by key, how (mapping.ts).
 */
import * as path from "node:path";
import type { Config } from "../config/schema.js";
import { ConfigError, UsageError } from "../errors.js";
import { VisionTransformer } from "../model/vision_transformer.js";
import { timmArchitecture } from "../weights/export.js";
import { splitBatch } from "./batch.js";
import { planData } from "./data_plan.js";
import { type KeyMapping, type MapContext, RULES, type TimmArg } from "./mapping.js";
import { planPretrained } from "./pretrained.js";
import { shellLine } from "./shell.js";

export interface TimmCommandOptions {
  /** The config file, as the user named it (for the `vit data export` line in the table). */
  configFile: string;
  /** `--set` overrides the config was loaded with (repeated in that line). */
  set?: readonly string[];
  nprocPerNode?: number;
  nnodes?: number;
  /** HOST:PORT of node 0, the same on every node (needed with more than one node). */
  rdzvEndpoint?: string;
  /** The one-process CPU check: `--device cpu`, one loader worker, no CUDA prefetcher. */
  cpu?: boolean;
  /** Where the exported ImageFolder is (default timm-data/<name>). */
  dataDir?: string;
  /** Where the teacher exported with `vit export --format timm` is (default timm-teacher/<name>). */
  teacherDir?: string;
  /** timm's train.py (default: train.py, run from timm's checkout). */
  trainPy?: string;
}

export interface TableRow {
  key: string;
  value: string;
  timm: string;
  note: string;
}

export interface TimmCommand {
  argv: string[];
  /** argv as one line a POSIX shell runs as is. */
  line: string;
  rows: TableRow[];
}

export function timmCommand(cfg: Config, opts: TimmCommandOptions): TimmCommand {
  const nproc = opts.nprocPerNode ?? 1;
  const nnodes = opts.nnodes ?? 1;
  if (opts.cpu && nproc * nnodes > 1) {
    throw new UsageError(
      "--device cpu runs one process: timm's DDP wrapper needs GPUs (drop --nproc-per-node / --nnodes)",
    );
  }
  if (nnodes > 1 && !opts.rdzvEndpoint) {
    throw new UsageError(
      `--nnodes ${nnodes} needs --rdzv-endpoint HOST:PORT (node 0's address, the same on every node)`,
    );
  }
  if (cfg.model.representation_size !== null) {
    throw new ConfigError(
      `model.representation_size ${cfg.model.representation_size}: timm 1.0's VisionTransformer has no pre-logits layer; set it to null to train with timm`,
    );
  }
  const exportDir = opts.dataDir ?? path.join("timm-data", cfg.name);
  const data = planData(cfg, exportDir);
  const numClasses = cfg.model.num_classes ?? data.classes?.length;
  if (numClasses === undefined) {
    throw new ConfigError(
      `model.num_classes is null and ${cfg.data.train} is not on this machine to count its classes: ` +
        "set it, e.g. --set model.num_classes=1000",
    );
  }
  const shapes = new VisionTransformer({ ...cfg.model, num_classes: numClasses }).paramShapes();
  const exportCommand = shellLine([
    "vit",
    "data",
    "export",
    "--config",
    opts.configFile,
    ...(opts.set ?? []).flatMap((s) => ["--set", s]),
    "--out",
    exportDir,
  ]);
  const ctx: MapContext = {
    cfg,
    numClasses,
    arch: timmArchitecture(cfg),
    data,
    batch: splitBatch(cfg.train.batch_size, cfg.train.accum_steps, nproc * nnodes),
    pretrained: cfg.model.pretrained ? planPretrained(cfg.model.pretrained, shapes) : null,
    teacherDir: opts.teacherDir ?? path.join("timm-teacher", cfg.name),
    exportCommand,
    cpu: opts.cpu ?? false,
  };

  const rows: TableRow[] = [];
  const args: TimmArg[] = [];
  const kwargs: string[] = [];
  for (const [key, rule] of Object.entries(RULES)) {
    const m = rule(ctx);
    rows.push(tableRow(key, valueAt(cfg, key), m));
    for (const a of m.args ?? []) addArg(args, a);
    for (const k of m.kwargs ?? []) if (!kwargs.includes(k)) kwargs.push(k);
  }
  if (opts.cpu) {
    const cpuArgs = [
      { flag: "--device", values: ["cpu"] },
      { flag: "--no-prefetcher", values: [] },
    ];
    for (const a of cpuArgs) addArg(args, a);
    rows.push({
      key: "(--device cpu)",
      value: "",
      timm: render(cpuArgs),
      note: "timm's prefetcher is CUDA's",
    });
  }
  // One CPU process needs no launcher: without torchrun's environment train.py runs undistributed.
  const launcher = opts.cpu ? ["python3"] : torchrun(nproc, nnodes, opts.rdzvEndpoint, cfg.name);
  rows.push({ key: "(processes)", value: `${nproc} x ${nnodes}`, timm: shellLine(launcher), note: "" });
  const argv = [
    ...launcher,
    opts.trainPy ?? "train.py",
    ...args.flatMap((a) => [a.flag, ...a.values]),
    ...(kwargs.length > 0 ? ["--model-kwargs", ...kwargs] : []),
  ];
  return { argv, line: shellLine(argv), rows };
}

/** torch 1.13's torchrun spells its flags with underscores; newer ones accept both. */
function torchrun(nproc: number, nnodes: number, endpoint: string | undefined, name: string): string[] {
  if (nnodes === 1) return ["torchrun", "--standalone", "--nproc_per_node", String(nproc)];
  return [
    "torchrun",
    "--nnodes",
    String(nnodes),
    "--nproc_per_node",
    String(nproc),
    "--rdzv_backend",
    "c10d",
    "--rdzv_endpoint",
    endpoint!,
    "--rdzv_id",
    name,
  ];
}

/** The same flag from two keys (batch size and accumulation) must agree; it is printed once. */
function addArg(args: TimmArg[], a: TimmArg): void {
  const seen = args.find((b) => b.flag === a.flag);
  if (!seen) args.push(a);
  else if (seen.values.join(" ") !== a.values.join(" ")) {
    throw new Error(`timm-command: ${a.flag} mapped to both "${seen.values}" and "${a.values}"`);
  }
}

function render(args: readonly TimmArg[]): string {
  return shellLine(args.flatMap((a) => [a.flag, ...a.values]));
}

function tableRow(key: string, value: string, m: KeyMapping): TableRow {
  const parts = [render(m.args ?? []), m.kwargs?.length ? shellLine(["--model-kwargs", ...m.kwargs]) : ""];
  const timm = parts.filter(Boolean).join(" ");
  return { key, value, timm: timm || "-", note: m.note ?? "" };
}

function valueAt(cfg: Config, key: string): string {
  let v: unknown = cfg;
  for (const k of key.split(".")) v = v === null || v === undefined ? v : (v as Record<string, unknown>)[k];
  return v === undefined ? "" : JSON.stringify(v);
}

/** The table for stderr: key, value, timm argument(s), note. */
export function formatTable(rows: readonly TableRow[]): string {
  const header: TableRow = { key: "config key", value: "value", timm: "timm train.py", note: "why / note" };
  const all = [header, ...rows];
  const w = (f: keyof TableRow) => Math.max(...all.map((r) => r[f].length));
  const [wk, wv] = [w("key"), Math.min(w("value"), 28)];
  return all
    .map((r) => `${r.key.padEnd(wk)}  ${r.value.padEnd(wv)}  ${r.timm}${r.note ? `   # ${r.note}` : ""}`)
    .join("\n");
}
