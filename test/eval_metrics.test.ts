import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { confusionTable, evalJson, formatEvalText, perClassTable } from "../src/eval/report.js";
import {
  addBatch,
  addPredictions,
  argmax,
  classMetrics,
  crossEntropy,
  emptyTally,
  mostConfused,
  softmax,
  summarize,
  topk,
} from "../src/metrics/classification.js";

const close = (a: number, b: number, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

describe("top-k and losses", () => {
  test("argmax and topk keep the lower index on ties, largest first", () => {
    assert.equal(argmax([1, 3, 3, 2]), 1);
    assert.deepEqual(topk([1, 3, 3, 2, 0], 3), [1, 2, 3]);
    assert.deepEqual(topk([0.1, 0.5, 0.2, 0.9, 0.3, 0.7, 0.6], 5), [3, 5, 6, 1, 4]);
    assert.deepEqual(topk([2, 1], 5), [0, 1]);
    // a row inside a flat batch
    assert.deepEqual(topk([9, 9, 1, 5, 3], 2, 2, 3), [1, 2]);
  });

  test("cross-entropy and softmax are stable for large logits", () => {
    close(crossEntropy([0, 0, 0, 0], 2), Math.log(4));
    close(crossEntropy([1000, 0], 1), 1000);
    close(crossEntropy([1000, 0], 0), 0);
    const p = softmax([1000, 1000, -Infinity]);
    assert.deepEqual(Array.from(p), [0.5, 0.5, 0]);
  });

  test("a batch of logits gives top-1, top-5, mean loss and the confusion matrix", () => {
    const t = emptyTally(6);
    const ramp = [1, 2, 3, 4, 5, 6];
    // A: all ties -> class 0 (hit). B: true 0 ranked 6th (miss top-5). C: true 1 ranked 5th. D: hit.
    addBatch(t, [0, 0, 0, 0, 0, 0, ...ramp, ...ramp], [0, 0, 1]);
    addBatch(t, ramp, [5]);
    const s = summarize(t);
    assert.equal(s.images, 4);
    assert.equal(s.top1, 0.5);
    assert.equal(s.top5, 0.75);
    // ln 6, lse-1, lse-2, lse-6 with lse = logsumexp(1..6) = 6.456193316018123
    close(s.loss, 3.0400848543206056, 1e-12);
    assert.deepEqual(s.confusion[0], [1, 0, 0, 0, 0, 1]);
    assert.deepEqual(s.confusion[1], [0, 0, 0, 0, 0, 1]);
    assert.deepEqual(s.confusion[5], [0, 0, 0, 0, 0, 1]);
    assert.equal(s.perClass[5].support, 1);
  });

  test("with fewer than 5 classes every label is in the top 5", () => {
    const t = emptyTally(3);
    addBatch(t, [3, 2, 1], [2]);
    const s = summarize(t);
    assert.equal(s.top1, 0);
    assert.equal(s.top5, 1);
  });

  test("bad labels and shapes are errors naming the image", () => {
    assert.throws(() => addBatch(emptyTally(3), [1, 2, 3], [3]), /label 3 of image 0 is outside \[0, 3\)/);
    assert.throws(() => addBatch(emptyTally(3), [1, 2, 3, 4], [0]), /4 logits for 1 labels and 3 classes/);
    assert.throws(() => addPredictions(emptyTally(2), [0, 1], [0]), /2 predictions for 1 labels/);
  });

  test("an empty evaluation reports NaN accuracies, which JSON turns into null", () => {
    const s = summarize(emptyTally(2));
    assert.ok(Number.isNaN(s.top1));
    const j = evalJson({ classes: ["a", "b"], summary: s });
    assert.equal(j.top1, null);
    assert.equal(j.images, 0);
  });
});

describe("per-class metrics (sklearn, zero_division=0)", () => {
  // y_true = [0,0,0,1,1,2,2,2,2,0], y_pred = [0,0,1,1,2,2,2,1,2,0]; class 3 never occurs.
  const yTrue = [0, 0, 0, 1, 1, 2, 2, 2, 2, 0];
  const yPred = [0, 0, 1, 1, 2, 2, 2, 1, 2, 0];
  const t = emptyTally(4);
  addPredictions(t, yPred, yTrue);
  const s = summarize(t);

  test("confusion matrix: rows are true classes, columns predicted", () => {
    assert.deepEqual(s.confusion, [
      [3, 1, 0, 0],
      [0, 1, 1, 0],
      [0, 1, 3, 0],
      [0, 0, 0, 0],
    ]);
    assert.equal(s.top1, 0.7);
    assert.ok(Number.isNaN(s.top5), "no logits, no top-5");
  });

  test("precision, recall, F1 and support by hand", () => {
    const expect = [
      { precision: 1, recall: 0.75, f1: 6 / 7, support: 4 },
      { precision: 1 / 3, recall: 0.5, f1: 0.4, support: 2 },
      { precision: 0.75, recall: 0.75, f1: 0.75, support: 4 },
      { precision: 0, recall: 0, f1: 0, support: 0 },
    ];
    for (const [c, e] of expect.entries()) {
      for (const k of ["precision", "recall", "f1", "support"] as const) close(s.perClass[c][k], e[k]);
    }
  });

  test("macro skips a class absent from labels and predictions; weighted is by support", () => {
    close(s.macro.precision, (1 + 1 / 3 + 0.75) / 3);
    close(s.macro.recall, (0.75 + 0.5 + 0.75) / 3);
    close(s.macro.f1, (6 / 7 + 0.4 + 0.75) / 3);
    close(s.weighted.precision, (4 * 1 + 2 / 3 + 4 * 0.75) / 10);
    close(s.weighted.recall, 0.7);
    close(s.weighted.f1, (4 * (6 / 7) + 2 * 0.4 + 4 * 0.75) / 10);
    assert.equal(s.macro.support, 10);
  });

  test("a class predicted but never true counts in the macro mean with zeros", () => {
    // classification_report([0, 0], [0, 1], zero_division=0): macro P 0.5, R 0.25, F1 1/3
    const m = classMetrics([
      [1, 1],
      [0, 0],
    ]);
    close(m[0].f1, 2 / 3);
    const t2 = emptyTally(3);
    addPredictions(t2, [0, 1], [0, 0]);
    const s2 = summarize(t2);
    close(s2.macro.precision, 0.5);
    close(s2.macro.recall, 0.25);
    close(s2.macro.f1, 1 / 3);
  });

  test("most confused pairs: by count, then by true and predicted index", () => {
    const pairs = mostConfused([
      [5, 2, 2],
      [3, 4, 0],
      [0, 2, 1],
    ]);
    assert.deepEqual(
      pairs.map((p) => [p.true, p.pred, p.count]),
      [
        [1, 0, 3],
        [0, 1, 2],
        [0, 2, 2],
        [2, 1, 2],
      ],
    );
    close(pairs[0].fraction, 3 / 7);
    assert.equal(mostConfused([[1]]).length, 0);
  });
});

describe("report", () => {
  const classes = ["cat", "dog", "bird"];
  const t = emptyTally(3);
  // cat ok, dog ok, dog -> bird, cat -> bird
  addBatch(t, [2, 1, 0, 0, 2, 1, 0, 1, 2, 0, 1, 2], [0, 1, 1, 0]);
  const s = summarize(t);

  test("JSON keeps the documented keys, per_class by name, and the extras", () => {
    const j = evalJson({ classes, summary: s, source: { checkpoint: "x.safetensors" } });
    assert.deepEqual(Object.keys(j).slice(0, 5), ["top1", "top5", "loss", "images", "per_class"]);
    assert.equal(j.top1, 0.5);
    assert.equal(j.images, 4);
    assert.deepEqual(Object.keys(j.per_class), classes);
    assert.deepEqual(j.per_class.dog, { precision: 1, recall: 0.5, f1: 0.666667, support: 2 });
    assert.deepEqual(j.confusion, [
      [1, 0, 1],
      [0, 1, 1],
      [0, 0, 0],
    ]);
    assert.deepEqual(j.most_confused[0], { true: "cat", pred: "bird", count: 1, fraction: 0.5 });
    assert.equal(j.checkpoint, "x.safetensors");
    assert.equal("heads" in j, false);
    // round-trips as JSON
    assert.deepEqual(JSON.parse(JSON.stringify(j)).per_class.cat.support, 2);
  });

  test("distilled heads are reported separately", () => {
    const j = evalJson({ classes, summary: s, heads: { head: s, head_dist: s, mean: s } });
    assert.deepEqual(Object.keys(j.heads!), ["head", "head_dist", "mean"]);
    assert.equal(j.heads!.head_dist.top1, 0.5);
    const txt = formatEvalText({ classes, summary: s, heads: { head: s, head_dist: s, mean: s } });
    assert.match(txt, /mean \(prediction\)\s+50\.00%/);
  });

  test("text tables are aligned", () => {
    const table = confusionTable(classes, s.confusion).split("\n");
    assert.deepEqual(table, [
      "true \\ pred 0 1 2",
      "0 cat       1 0 1",
      "1 dog       0 1 1",
      "2 bird      0 0 0",
    ]);
    const per = perClassTable(classes, s).split("\n");
    assert.equal(per[0], "class         precision  recall  f1-score  support");
    assert.equal(per[2], "dog               1.000   0.500     0.667        2");
    assert.match(per.at(-2)!, /^macro avg/);
    assert.match(per.at(-1)!, /^weighted avg/);
    const txt = formatEvalText({ classes, summary: s });
    assert.match(txt, /^images 4 {2}top-1 50\.00% {2}top-5 100\.00% {2}loss \d\.\d{4}\n/);
    assert.match(txt, /cat -> bird {2}1 {2}\(50\.0% of cat\)/);
  });

  test("more than 20 classes: the matrix is not printed as text", () => {
    const many = Array.from({ length: 21 }, (_, i) => `c${i}`);
    const t21 = emptyTally(21);
    addPredictions(t21, [0], [0]);
    const txt = formatEvalText({
      classes: many,
      summary: summarize(t21),
      source: { confusion_png: "out/confusion.png" },
    });
    assert.match(txt, /confusion matrix: 21 classes, drawn in out\/confusion\.png/);
    assert.doesNotMatch(txt, /true \\ pred/);
  });
});
