import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { forwardWithAttention } from "../src/attention/capture.js";
import { figureLayout, overlayHeatmap, resizeRgb, writeAttentionPng } from "../src/attention/figure.js";
import {
  addResidual,
  attentionRollout,
  headMean,
  headRelevance,
  type LayerAttention,
  minMaxScale,
  patchRelevance,
} from "../src/attention/rollout.js";
import { ModelConfigSchema } from "../src/config/schema.js";
import { confusionLayout, confusionSvg, writeConfusionPng } from "../src/eval/confusion_plot.js";
import { readSafetensors } from "../src/io/safetensors.js";
import { createModel } from "../src/model/vision_transformer.js";
import { blues, inferno, viridis } from "../src/plot/colormap.js";
import { escapeXml } from "../src/plot/svg.js";
import { FIXTURES } from "./support.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vit-eval-plots-"));
const layer = (heads: number, tokens: number, rows: number[]): LayerAttention => ({
  heads,
  tokens,
  data: Float32Array.from(rows),
});
const closeAll = (a: ArrayLike<number>, b: number[], tol = 1e-12) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `[${i}] ${a[i]} != ${b[i]}`);
};

describe("attention rollout (Abnar & Zuidema 2020)", () => {
  test("heads are fused by their mean", () => {
    closeAll(headMean(layer(2, 2, [1, 0, 0, 1, 0, 1, 1, 0])), [0.5, 0.5, 0.5, 0.5]);
  });

  test("the residual adds the identity and re-normalises rows", () => {
    closeAll(addResidual(Float64Array.from([0.5, 0.5, 0, 1]), 2), [0.75, 0.25, 0, 1]);
  });

  test("layers multiply with the first layer rightmost", () => {
    // A1' = [[.75,.25],[0,1]], A2' = [[.5,.5],[.5,.5]]: R = A2' A1' = [[.375,.625],[.375,.625]]
    // (A1' A2' would be all 0.5).
    const r = attentionRollout([layer(1, 2, [0.5, 0.5, 0, 1]), layer(1, 2, [0, 1, 1, 0])]);
    closeAll(r, [0.375, 0.625, 0.375, 0.625]);
    // every row of the rollout still sums to 1
    const r3 = attentionRollout([
      layer(2, 3, [0.2, 0.3, 0.5, 0.1, 0.1, 0.8, 1, 0, 0, 0.6, 0.2, 0.2, 0.3, 0.3, 0.4, 0, 0.5, 0.5]),
      layer(1, 3, [0.1, 0.6, 0.3, 0.4, 0.4, 0.2, 0.5, 0.25, 0.25]),
    ]);
    for (let row = 0; row < 3; row++)
      assert.ok(Math.abs(r3[row * 3] + r3[row * 3 + 1] + r3[row * 3 + 2] - 1) < 1e-12);
  });

  test("one layer with three tokens, by hand", () => {
    // mean of heads: [[.5,.25,.25],[.2,.4,.4],[0,.5,.5]]; +I, /2 -> row 0 = [.75,.125,.125]
    const a = layer(2, 3, [0.5, 0.5, 0, 0.4, 0.4, 0.2, 0, 1, 0, 0.5, 0, 0.5, 0, 0.4, 0.6, 0, 0, 1]);
    const r = attentionRollout([a]);
    // the inputs are float32, so 1e-7
    closeAll(r.subarray(0, 3), [0.75, 0.125, 0.125], 1e-7);
    closeAll(patchRelevance(r, 3, 1), [0.125, 0.125], 1e-7);
    // avg pooling: the mean of the patch rows (1 and 2) over the patch columns
    closeAll(patchRelevance(r, 3, 1, "mean"), [(0.7 + 0.25) / 2, (0.2 + 0.75) / 2], 1e-7);
  });

  test("last-layer class-token attention per head skips the prefix tokens", () => {
    const a = layer(2, 3, [0.2, 0.3, 0.5, 0, 0, 0, 0, 0, 0, 0.6, 0.1, 0.3, 0, 0, 0, 0, 0, 0]);
    const heads = headRelevance(a, 1);
    closeAll(heads[0], [0.3, 0.5], 1e-7);
    closeAll(heads[1], [0.1, 0.3], 1e-7);
    closeAll(headRelevance(a, 2)[1], [0.3], 1e-7);
    // avg pooling: mean of the patch rows (all zero here)
    closeAll(headRelevance(a, 1, "mean")[0], [0, 0]);
  });

  test("shape errors name the layer", () => {
    assert.throws(() => attentionRollout([layer(1, 2, [1, 0, 0])]), /attention of layer 0: 3 values/);
    assert.throws(
      () => attentionRollout([layer(1, 2, [1, 0, 0, 1]), layer(1, 1, [1])]),
      /layer 1 has 1 tokens, layer 0 has 2/,
    );
    assert.throws(() => attentionRollout([]), /no layers/);
  });

  test("min-max scaling", () => {
    closeAll(minMaxScale([2, 4, 3]), [0, 1, 0.5]);
    closeAll(minMaxScale([7, 7]), [0, 0]);
  });
});

describe("pixels", () => {
  test("maps upsample bilinearly at pixel centres and blend with alpha", () => {
    const black = { width: 4, height: 1, data: new Uint8Array(12) };
    const grey = (t: number): [number, number, number] =>
      [t * 255, t * 255, t * 255].map(Math.round) as [number, number, number];
    const out = overlayHeatmap(black, [0, 1], [1, 2], { cmap: grey, alpha: 1 });
    assert.deepEqual(Array.from(out.data.filter((_, i) => i % 3 === 0)), [0, 64, 191, 255]);
    const half = overlayHeatmap({ width: 1, height: 1, data: Uint8Array.from([200, 100, 0]) }, [1], [1, 1], {
      cmap: () => [0, 0, 0],
      alpha: 0.5,
    });
    assert.deepEqual(Array.from(half.data), [100, 50, 0]);
    const big = resizeRgb({ width: 1, height: 1, data: Uint8Array.from([9, 8, 7]) }, 3, 2);
    assert.deepEqual(Array.from(big.data), [9, 8, 7, 9, 8, 7, 9, 8, 7, 9, 8, 7, 9, 8, 7, 9, 8, 7]);
  });

  test("colour maps run from their first to their last anchor", () => {
    assert.deepEqual(viridis(0), [0x44, 0x01, 0x54]);
    assert.deepEqual(viridis(1), [0xfd, 0xe7, 0x25]);
    assert.deepEqual(inferno(2), inferno(1));
    assert.deepEqual(blues(0), [0xf7, 0xfb, 0xff]);
    assert.equal(escapeXml(`a<b & "c"`), "a&#60;b &#38; &#34;c&#34;");
  });
});

describe("figures", () => {
  test("confusion.png at 100 classes: size from the layout, dark diagonal, white elsewhere", async () => {
    const classes = Array.from({ length: 100 }, (_, i) => `class_${String(i).padStart(3, "0")}`);
    const cm: number[][] = classes.map((_, t) => classes.map((_, p) => (t === p ? 10 : 0)));
    cm[3][7] = 5;
    const file = path.join(tmp, "confusion100.png");
    await writeConfusionPng(file, classes, cm, { title: "100 classes" });
    const lay = confusionLayout(classes);
    assert.equal(lay.cell, 12);
    assert.ok(lay.verticalX);
    const meta = await sharp(file).metadata();
    assert.equal(meta.format, "png");
    assert.equal(meta.width, lay.width);
    assert.equal(meta.height, lay.height);
    assert.ok(lay.width > 1200 && lay.width < 1800, `width ${lay.width}`);
    const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const px = (t: number, p: number) => {
      const x = Math.round(lay.left + (p + 0.5) * lay.cell);
      const y = Math.round(lay.top + (t + 0.5) * lay.cell);
      const i = (y * info.width + x) * info.channels;
      return [data[i], data[i + 1], data[i + 2]];
    };
    // row 3 has 15 images: 10/15 on the diagonal, 5/15 at column 7; rows without confusion are full
    assert.deepEqual(px(50, 50), blues(1));
    assert.deepEqual(px(3, 7), blues(5 / 15));
    assert.deepEqual(px(50, 51), blues(0));
  });

  test("confusion.png at 3 classes writes counts and keeps labels horizontal", async () => {
    const svg = confusionSvg(
      ["a", "b", "c"],
      [
        [3, 0, 0],
        [1, 2, 0],
        [0, 0, 0],
      ],
    );
    assert.match(svg, />3<\/text>/);
    assert.equal(confusionLayout(["a", "b", "c"]).verticalX, false);
    assert.throws(() => confusionSvg(["a", "b"], [[1]]), /not 2x2/);
    const png = path.join(tmp, "c3.png");
    await writeConfusionPng(
      png,
      ["a", "b", "c"],
      [
        [3, 0, 0],
        [1, 2, 0],
        [0, 0, 0],
      ],
    );
    assert.equal((await sharp(png).metadata()).width, confusionLayout(["a", "b", "c"]).width);
  });

  test("attention figure: a PNG of the layout's size with 12 heads in two rows", async () => {
    // 16 px margin + 6 panels of 224 px + 12 px gaps; title 64 + 3 rows of (224 + 20 caption + 12) + 8.
    const WANT_12_HEADS = { width: 16 + 6 * (224 + 12), height: 64 + 3 * (224 + 20 + 12) + 8 };
    const image = { width: 16, height: 16, data: new Uint8Array(16 * 16 * 3).fill(128) };
    const map = Array.from({ length: 16 }, (_, i) => i);
    const file = path.join(tmp, "attn.png");
    const lay = await writeAttentionPng(file, {
      image,
      grid: [4, 4],
      rollout: map,
      heads: Array.from({ length: 12 }, () => map),
      depth: 12,
      title: "a.jpg: cat 91.00%",
    });
    // 12 heads: 6 columns, so the rollout row and two rows of heads; the sizes spelled out, not re-derived.
    assert.equal(lay.columns, 6);
    assert.equal(lay.width, WANT_12_HEADS.width);
    assert.equal(lay.height, WANT_12_HEADS.height);
    const meta = await sharp(file).metadata();
    assert.equal(meta.format, "png");
    assert.equal(meta.width, lay.width);
    assert.equal(meta.height, lay.height);
    assert.equal(figureLayout(3).columns, 3);
    assert.equal(figureLayout(1).columns, 2);
  });
});

describe("attention capture", () => {
  for (const name of ["vit_cls", "deit_distilled"]) {
    test(`${name}: captured attention probabilities equal timm's, logits too`, async () => {
      await tf.setBackend("cpu");
      const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), "utf8"));
      const { num_classes, ...kwargs } = spec.timm_kwargs;
      const cfg = ModelConfigSchema.parse({ ...kwargs, distilled: spec.distilled, drop_path_rate: 0 });
      const model = createModel({ ...cfg, num_classes }, { seed: 0 });
      model.loadStateDict(readSafetensors(path.join(FIXTURES, `${name}.safetensors`)).tensors);
      const [b, c, h, w] = spec.input.shape;
      const raw = fs.readFileSync(path.join(FIXTURES, `${name}.input.bin`));
      const nchw = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      const before = tf.memory().numTensors;
      const x = tf.tidy(() => tf.transpose(tf.tensor4d(nchw, [b, c, h, w]), [0, 2, 3, 1]) as tf.Tensor4D);
      const pass = forwardWithAttention(model, x);
      x.dispose();
      assert.equal(tf.memory().numTensors, before, "no tensor left behind");
      const inter = readSafetensors(path.join(FIXTURES, `${name}.intermediates.safetensors`)).tensors;
      for (let layer = 0; layer < kwargs.depth; layer++) {
        const want = inter.get(`blocks.${layer}.attn.attn_drop`)!; // [B, heads, T, T]
        const per = want.data.length / b;
        for (let i = 0; i < b; i++) {
          const got = pass.attention[i][layer];
          assert.equal(got.heads, kwargs.num_heads);
          assert.equal(got.tokens, spec.derived.seq_len);
          closeAll(got.data, Array.from(want.data.subarray(i * per, (i + 1) * per)), 2e-5);
        }
      }
      closeAll(pass.logits, spec.expected.logits.flat(), 1e-4);
      // the rollout of real attention keeps rows stochastic
      const r = attentionRollout(pass.attention[0]);
      const t = spec.derived.seq_len;
      for (let row = 0; row < t; row++) {
        let sum = 0;
        for (let col = 0; col < t; col++) sum += r[row * t + col];
        assert.ok(Math.abs(sum - 1) < 1e-5);
      }
      model.dispose();
    });
  }
});
