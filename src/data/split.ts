/**
 * The seeded, stratified hold-out used when there is no `data.val`: each class gives
 * round(fraction x its count) images to validation (at least one when it has two or more, never
 * all of them), so rare classes are represented and the class balance is kept.
 */
import { Rng } from "../random.js";
import type { Dataset, Sample } from "./dataset.js";
import { shuffle } from "./random.js";

export function valCount(classSize: number, fraction: number): number {
  if (fraction <= 0 || classSize < 2) return 0;
  return Math.min(classSize - 1, Math.max(1, Math.round(fraction * classSize)));
}

export function stratifiedSplit(
  ds: Dataset,
  fraction: number,
  seed: number,
): { train: Dataset; val: Dataset } {
  const byClass = ds.classes.map(() => [] as number[]);
  for (const [i, s] of ds.samples.entries()) byClass[s.label].push(i);
  const isVal = new Uint8Array(ds.samples.length);
  byClass.forEach((members, label) => {
    const picked = shuffle(Rng.from(seed, `data/split/${label}`), Int32Array.from(members));
    for (const i of picked.subarray(0, valCount(members.length, fraction))) isVal[i] = 1;
  });
  const part = (v: number): Sample[] => ds.samples.filter((_, i) => isVal[i] === v);
  const pct = `${Math.round(fraction * 1000) / 10}%`;
  return {
    train: { source: ds.source, classes: ds.classes, samples: part(0) },
    val: { source: `${ds.source} (${pct} held out, seed ${seed})`, classes: ds.classes, samples: part(1) },
  };
}
