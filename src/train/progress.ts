/**
 * What a person watching a run sees, on stderr (stdout is for results). On a TTY a bar per
 * epoch redrawn in place; otherwise (CI logs, pipes) one plain line per log interval.
 */

export interface StepStatus {
  epoch: number;
  epochs: number;
  /** Optimizer steps done in this epoch, and the epoch's total. */
  step: number;
  steps: number;
  imagesPerSec: number;
  lr: number;
  /** Last loss read from the device (only read at log steps), or null before the first. */
  loss: number | null;
  /** Seconds left in this epoch's training steps. */
  etaSec: number;
}

interface Output {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const REDRAW_MS = 100;

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(h > 0 ? 2 : 1, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function formatLr(lr: number): string {
  return lr.toExponential(2);
}

/** Aligned `key  value` lines for the start-up summary. */
export function formatSummary(rows: Array<[string, string]>): string {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join("\n");
}

export class Progress {
  private readonly tty: boolean;
  private barShown = false;
  private lastDraw = 0;

  constructor(private readonly out: Output = process.stderr) {
    this.tty = out.isTTY === true;
  }

  /** Every step: redraws the bar on a TTY (at most 10 times a second). */
  status(s: StepStatus): void {
    if (!this.tty) return;
    const now = Date.now();
    if (now - this.lastDraw < REDRAW_MS && s.step < s.steps) return;
    this.lastDraw = now;
    const tail = [
      `${s.step}/${s.steps}`,
      `${s.imagesPerSec.toFixed(0)} img/s`,
      `loss ${s.loss === null ? "-" : s.loss.toFixed(4)}`,
      `lr ${formatLr(s.lr)}`,
      `ETA ${formatDuration(s.etaSec)}`,
    ].join("  ");
    const head = `epoch ${s.epoch + 1}/${s.epochs} `;
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 100) - head.length - tail.length - 4));
    const filled = Math.round((width * s.step) / Math.max(1, s.steps));
    this.out.write(`\r\x1b[2K${head}[${"#".repeat(filled)}${".".repeat(width - filled)}] ${tail}`);
    this.barShown = true;
  }

  /** At log steps: one line when there is no bar to look at. */
  logStep(s: StepStatus, globalStep: number): void {
    if (this.tty) return;
    this.out.write(
      `epoch ${s.epoch + 1}/${s.epochs}  step ${s.step}/${s.steps} (${globalStep})  loss ${s.loss === null ? "-" : s.loss.toFixed(4)}  lr ${formatLr(s.lr)}  ${s.imagesPerSec.toFixed(1)} img/s  ETA ${formatDuration(s.etaSec)}\n`,
    );
  }

  /** A line of its own (summary, epoch result, warning); ends the bar first. */
  print(line: string): void {
    this.endBar();
    this.out.write(`${line}\n`);
  }

  endBar(): void {
    if (this.barShown) this.out.write("\n");
    this.barShown = false;
  }
}
