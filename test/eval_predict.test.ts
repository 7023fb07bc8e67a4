import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { createWriter, csvField, type PredictResult, topPredictions } from "../src/predict/format.js";
import { expandInputs, glob, imagesInDir, segmentRegExp } from "../src/predict/inputs.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "vit-predict-inputs-"));
const files = ["a.jpg", "b.PNG", "notes.txt", ".hidden.jpg", "sub/c.webp", "sub/e.jpg", "sub/deep/d.jpeg"];
for (const f of files) {
  fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
  fs.writeFileSync(path.join(root, f), "x");
}
fs.mkdirSync(path.join(root, "empty"));
const r = (...p: string[]) => path.join(root, ...p);

describe("input expansion", () => {
  test("a folder yields its images recursively, sorted, hidden files and non-images skipped", () => {
    assert.deepEqual(imagesInDir(root), [
      r("a.jpg"),
      r("b.PNG"),
      r("sub/c.webp"),
      r("sub/deep/d.jpeg"),
      r("sub/e.jpg"),
    ]);
  });

  test("* and ? match within one folder", () => {
    assert.deepEqual(glob(`${root}/*.jpg`), [r("a.jpg")]);
    assert.deepEqual(glob(`${root}/su?/*`), [r("sub/c.webp"), r("sub/e.jpg")]);
    assert.deepEqual(glob(`${root}/*`), [r("a.jpg"), r("b.PNG")]);
    assert.deepEqual(glob(`${root}/.*`), [r(".hidden.jpg")]);
  });

  test("** matches zero or more folders", () => {
    assert.deepEqual(glob(`${root}/**/*.jpg`), [r("a.jpg"), r("sub/e.jpg")]);
    assert.deepEqual(glob(`${root}/**/*.jp*g`), [r("a.jpg"), r("sub/deep/d.jpeg"), r("sub/e.jpg")]);
    assert.deepEqual(glob(`${root}/**`), imagesInDir(root));
    assert.deepEqual(glob(`${root}/sub/**/d.*`), [r("sub/deep/d.jpeg")]);
  });

  test("relative patterns stay relative", () => {
    const rel = path.relative(process.cwd(), root);
    assert.deepEqual(glob(`${rel}/sub/*.jpg`), [path.join(rel, "sub/e.jpg")]);
  });

  test("pattern characters other than * and ? are literal", () => {
    assert.ok(segmentRegExp("a.(1)+*.jpg").test("a.(1)+x.jpg"));
    assert.ok(!segmentRegExp("a.jpg").test("abjpg"));
    assert.ok(!segmentRegExp("*").test("a/b"));
  });

  test("mixed arguments: files kept as named, folders and patterns expanded, duplicates dropped", () => {
    const out = expandInputs([r("a.jpg"), r("missing.jpg"), r("notes.txt"), root, `${root}/sub/*.jpg`]);
    assert.deepEqual(out.files, [
      r("a.jpg"),
      r("missing.jpg"),
      r("notes.txt"),
      r("b.PNG"),
      r("sub/c.webp"),
      r("sub/deep/d.jpeg"),
      r("sub/e.jpg"),
    ]);
    assert.deepEqual(out.errors, []);
  });

  test("an empty folder and a pattern that matches nothing are errors naming them", () => {
    const out = expandInputs([r("empty"), `${root}/*.gif`, r("a.jpg")]);
    assert.deepEqual(out.files, [r("a.jpg")]);
    assert.deepEqual(
      out.errors.map((e) => e.message),
      [`${r("empty")}: no image files in this folder`, `${root}/*.gif: matched no image files`],
    );
  });
});

describe("predict output", () => {
  const labels = ["cat", "dog, big", "bird"];
  const ok: PredictResult = { image: "a.jpg", predictions: topPredictions([0, Math.log(3), 0], 2, labels) };
  const bad: PredictResult = { image: "bad.jpg", predictions: [], error: "bad.jpg: cannot decode image" };

  test("top-k: softmax probabilities, most probable first, ties by index", () => {
    assert.deepEqual(ok.predictions, [
      { label: "dog, big", index: 1, prob: 0.6 },
      { label: "cat", index: 0, prob: 0.2 },
    ]);
    assert.deepEqual(topPredictions([5, 1], 5), [
      { label: "0", index: 0, prob: 0.982014 },
      { label: "1", index: 1, prob: 0.017986 },
    ]);
  });

  const render = (format: "json" | "csv" | "table", results: PredictResult[]) => {
    const w = createWriter(format, { topk: 2, images: results.map((x) => x.image), labels });
    return w.begin() + results.map((x) => w.write(x)).join("") + w.end();
  };

  test("--json is the documented JSON shape, streamed as a valid array", () => {
    const out = JSON.parse(render("json", [ok, bad]));
    assert.deepEqual(out[0], {
      image: "a.jpg",
      predictions: [
        { label: "dog, big", index: 1, prob: 0.6 },
        { label: "cat", index: 0, prob: 0.2 },
      ],
    });
    assert.deepEqual(out[1], { image: "bad.jpg", predictions: [], error: "bad.jpg: cannot decode image" });
    assert.deepEqual(JSON.parse(render("json", [])), []);
  });

  test("--csv: one row per image, quoted where needed, error column last", () => {
    const lines = render("csv", [ok, bad]).trimEnd().split("\n");
    assert.deepEqual(lines, [
      "image,label_1,index_1,prob_1,label_2,index_2,prob_2,error",
      'a.jpg,"dog, big",1,0.6,cat,0,0.2,',
      "bad.jpg,,,,,,,bad.jpg: cannot decode image",
    ]);
    assert.equal(csvField('say "hi"'), '"say ""hi"""');
  });

  test("the table aligns columns and leaves failed images to the error line", () => {
    const lines = render("table", [ok, bad, { ...ok, image: "longer/name.png" }])
      .trimEnd()
      .split("\n");
    assert.deepEqual(lines, [
      "image            top-1             top-2",
      "a.jpg            dog, big  60.00%  cat       20.00%",
      "longer/name.png  dog, big  60.00%  cat       20.00%",
    ]);
  });
});
