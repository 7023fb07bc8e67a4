/**
 * Per-step statistics kept on the device, so the loop reads them only at log steps and epoch
 * ends (a read forces a sync) yet misses no step.
 */
import * as tf from "@tensorflow/tfjs";

/** Running means of named scalars (the epoch's train loss and any extra loss terms). */
export class RunningMeans {
  private readonly sums = new Map<string, tf.Variable>();
  private count = 0;

  add(values: Record<string, tf.Scalar>): void {
    tf.tidy(() => {
      for (const [name, v] of Object.entries(values)) {
        const sum = this.sums.get(name);
        if (sum) sum.assign(tf.add(sum, v));
        else this.sums.set(name, tf.variable(tf.clone(v), false));
      }
    });
    this.count++;
  }

  get steps(): number {
    return this.count;
  }

  /** Plain sums and count: what a checkpoint stores to resume an epoch mid-way. */
  export(): { sums: Record<string, number>; count: number } {
    const sums: Record<string, number> = {};
    for (const [name, v] of this.sums) sums[name] = v.dataSync()[0];
    return { sums, count: this.count };
  }

  import(state: { sums: Record<string, number>; count: number }): void {
    this.reset();
    tf.tidy(() => {
      for (const [name, s] of Object.entries(state.sums))
        this.sums.set(name, tf.variable(tf.scalar(s), false));
    });
    this.count = state.count;
  }

  means(): Record<string, number> {
    const { sums, count } = this.export();
    return Object.fromEntries(Object.entries(sums).map(([k, s]) => [k, s / Math.max(1, count)]));
  }

  reset(): void {
    for (const v of this.sums.values()) v.dispose();
    this.sums.clear();
    this.count = 0;
  }
}

/** Remembers the first step whose loss or gradient norm was not finite (-1: none yet). */
export class NonFiniteWatch {
  private readonly first = tf.tidy(() => tf.variable(tf.scalar(-1, "int32"), false));

  record(step: number, ...values: tf.Scalar[]): void {
    tf.tidy(() => {
      const finite = tf.all(tf.isFinite(tf.stack(values)));
      const isNew = tf.logicalAnd(tf.less(this.first, 0), tf.logicalNot(finite));
      this.first.assign(tf.where(isNew, tf.scalar(step, "int32"), this.first));
    });
  }

  /** The first bad step, or null. */
  read(): number | null {
    const v = this.first.dataSync()[0];
    return v < 0 ? null : v;
  }

  dispose(): void {
    this.first.dispose();
  }
}
