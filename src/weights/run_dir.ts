/**
 * The run folder `<output.dir>/<name>/`: everything needed to audit or resume a run.
 *
 *   config.yaml                        the resolved config
 *   metrics.jsonl                      one JSON object per log step and per epoch
 *   curves.png                         loss, accuracy and lr per epoch, redrawn each epoch
 *   checkpoints/last.safetensors       weights + config and classes in __metadata__
 *   checkpoints/last.state.safetensors optimizer moments, EMA weights, trainer state
 *   checkpoints/best.safetensors       weights of the epoch with the best val top-1
 *   checkpoints/ema.safetensors        EMA weights (when train.ema is set)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../io/atomic.js";

export const RUN_FILES = {
  config: "config.yaml",
  metrics: "metrics.jsonl",
  curves: "curves.png",
  last: "checkpoints/last.safetensors",
  lastState: "checkpoints/last.state.safetensors",
  best: "checkpoints/best.safetensors",
  ema: "checkpoints/ema.safetensors",
} as const;

export type RunFile = keyof typeof RUN_FILES;

export function runPath(dir: string, file: RunFile): string {
  return path.join(dir, RUN_FILES[file]);
}

/**
 * Creates `<outputDir>/<name>`, or `<name>-1`, `<name>-2`, ... when it exists, so a new run
 * never writes into an old one. mkdir without `recursive` fails on an existing folder, which
 * makes the pick race-free between two runs starting together.
 */
export function createRunDir(outputDir: string, name: string): string {
  fs.mkdirSync(outputDir, { recursive: true });
  for (let i = 0; ; i++) {
    const dir = path.join(outputDir, i === 0 ? name : `${name}-${i}`);
    try {
      fs.mkdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw err;
    }
    fs.mkdirSync(path.join(dir, "checkpoints"));
    return dir;
  }
}

/** A metrics.jsonl record: `kind` tells a log-step record from an end-of-epoch one. */
export interface MetricsRecord {
  kind: "step" | "epoch";
  step: number;
  epoch: number;
  [key: string]: number | string | null;
}

/**
 * metrics.jsonl, appended one whole line per write. A crash can at worst leave a partial last
 * line, which reading skips; a resume rewrites the file (atomically) without the records past
 * the checkpoint, so a resumed run's log reads as if it had never stopped.
 */
export class MetricsLog {
  constructor(readonly file: string) {}

  append(record: MetricsRecord): void {
    fs.appendFileSync(this.file, `${JSON.stringify(record)}\n`);
  }

  read(): MetricsRecord[] {
    if (!fs.existsSync(this.file)) return [];
    const out: MetricsRecord[] = [];
    for (const line of fs.readFileSync(this.file, "utf8").split("\n")) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        // a line cut short by a crash
      }
    }
    return out;
  }

  /** Keeps the records up to and including optimizer step `step`. */
  truncateAfter(step: number): void {
    const kept = this.read().filter((r) => r.step <= step);
    writeFileAtomic(this.file, kept.map((r) => `${JSON.stringify(r)}\n`).join(""));
  }
}
