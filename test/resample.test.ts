/**
 * pos_embed resampling against timm's resample_abs_pos_embed (bicubic, antialias) for every
 * `resample_pos_embed` entry of every case in the parity fixtures.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { readSafetensors } from "../src/io/safetensors.js";
import { resamplePosEmbed } from "../src/model/layers/pos_embed.js";
import { assertClose, FIXTURES } from "./support.js";

interface ResampleCase {
  old_grid: [number, number];
  new_grid: [number, number];
  num_prefix_tokens: number;
  interpolation: string;
  antialias: boolean;
  shape: number[];
  values: unknown;
}

const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, "manifest.json"), "utf8")) as {
  cases: { name: string; json: string }[];
};

let checked = 0;
for (const c of manifest.cases) {
  const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, c.json), "utf8"));
  const cases: ResampleCase[] = spec.resample_pos_embed ?? [];
  if (cases.length === 0) continue;
  describe(`resample pos_embed: ${c.name}`, () => {
    const posEmbed = readSafetensors(path.join(FIXTURES, spec.files.state_dict)).tensors.get("pos_embed")!;
    for (const r of cases) {
      test(`${r.old_grid.join("x")} -> ${r.new_grid.join("x")}, ${r.num_prefix_tokens} prefix tokens`, () => {
        assert.equal(r.interpolation, "bicubic");
        assert.equal(r.antialias, true);
        const out = resamplePosEmbed(posEmbed, r.new_grid, r.old_grid, r.num_prefix_tokens);
        assert.deepEqual(out.shape, r.shape);
        assertClose(
          out.data,
          Float32Array.from((r.values as number[]).flat(Number.POSITIVE_INFINITY) as number[]),
          1e-5,
          "values",
        );
        // The prefix rows are copied, not interpolated.
        const prefix = r.num_prefix_tokens * posEmbed.shape[2];
        assert.deepEqual(out.data.subarray(0, prefix), posEmbed.data.subarray(0, prefix));
      });
      checked++;
    }
  });
}

test("the fixtures hold resample cases (the loop above is not vacuous)", () => {
  assert.ok(checked >= 1, `found ${checked} resample cases`);
});

test("same grid is the identity", () => {
  const data = Float32Array.from({ length: (1 + 9) * 4 }, (_, i) => Math.sin(i));
  const out = resamplePosEmbed({ shape: [1, 10, 4], data }, [3, 3], [3, 3], 1);
  assert.deepEqual(out.data, data);
});

test("a constant grid stays constant when up- and downsampled (weights are renormalised)", () => {
  const data = new Float32Array(5 * 5 * 2).fill(0.75);
  for (const grid of [[2, 3] as [number, number], [8, 7] as [number, number], [1, 1] as [number, number]]) {
    const out = resamplePosEmbed({ shape: [1, 25, 2], data }, grid, [5, 5], 0);
    assert.deepEqual(out.shape, [1, grid[0] * grid[1], 2]);
    for (const v of out.data) assert.ok(Math.abs(v - 0.75) < 1e-7, `got ${v}`);
  }
});

test("a token count that does not match the old grid is a named error", () => {
  const posEmbed = { shape: [1, 17, 2], data: new Float32Array(34) };
  assert.throws(
    () => resamplePosEmbed(posEmbed, [6, 6], [4, 4], 2),
    /pos_embed: 17 tokens do not fit 2 prefix tokens \+ a 4x4 grid \(18\)/,
  );
});
