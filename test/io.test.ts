/**
 * safetensors reader/writer and atomic writes: round trips, dtype decoding, the parity fixtures'
 * files, and one named error per malformed header.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { DataError, VitError } from "../src/errors.js";
import { writeFileAtomic } from "../src/io/atomic.js";
import {
  MAX_HEADER_BYTES,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
} from "../src/io/safetensors.js";
import type { TensorData } from "../src/tensor.js";
import { FIXTURES } from "./support.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vit-io-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let fileCounter = 0;
function tmpFile(name = "t.safetensors"): string {
  const dir = path.join(tmp, String(fileCounter++));
  fs.mkdirSync(dir);
  return path.join(dir, name);
}

/** A file laid out by hand: [u64 length][header][data]. `length` overrides the true header length. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), length?: bigint): string {
  const file = tmpFile();
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(length ?? BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([head, json, data]));
  return file;
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function throwsData(fn: () => unknown, pattern: RegExp, file: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DataError, `expected a DataError, got ${err}`);
    assert.match(err.message, pattern);
    assert.ok(err.message.includes(file), `message names the file: ${err.message}`);
    assert.ok(!err.message.includes("\n"), "one line");
    return true;
  });
}

describe("safetensors round trip", () => {
  test("write -> read is bit-exact, keeps order, shapes, metadata and aligns the header", () => {
    // An unaligned view (byteOffset 4) and special values: -0, denormal, inf, NaN.
    const backing = new Float32Array([9, 1.5, -0, 1e-45, Number.POSITIVE_INFINITY, Number.NaN, -3.25]);
    const tensors = new Map<string, TensorData>([
      ["b.weight", { shape: [2, 3], data: backing.subarray(1) }],
      ["a.scalar", { shape: [], data: new Float32Array([Math.PI]) }],
      ["empty", { shape: [0, 4], data: new Float32Array(0) }],
      [
        "pos_embed",
        { shape: [1, 5, 3], data: Float32Array.from({ length: 15 }, (_, i) => Math.sin(i) * 1e3) },
      ],
    ]);
    const metadata = { config: JSON.stringify({ model: { embed_dim: 3 } }), classes: '["chat","čaj","犬"]' };
    for (const n of [0, 1, 2, 3, 4, 5, 6, 7]) {
      // Vary the header length so every padding amount occurs.
      const file = tmpFile();
      writeSafetensors(file, tensors, { ...metadata, pad: "x".repeat(n) });
      const bytes = fs.readFileSync(file);
      const headerLen = Number(bytes.readBigUInt64LE(0));
      assert.equal((8 + headerLen) % 8, 0, "data section starts 8-byte aligned");
      const headerText = bytes.subarray(8, 8 + headerLen).toString("utf8");
      assert.match(headerText, /^\{.*\} *$/s, "padded with trailing spaces");
      assert.deepEqual(Object.keys(JSON.parse(headerText)), ["__metadata__", ...tensors.keys()]);
      const read = readSafetensors(file);
      assert.deepEqual([...read.tensors.keys()], [...tensors.keys()]);
      for (const [name, t] of tensors) {
        const got = read.tensors.get(name)!;
        assert.equal(got.dtype, "F32");
        assert.deepEqual(got.shape, t.shape);
        assert.ok(got.data instanceof Float32Array);
        assert.deepEqual(bits(got.data), bits(t.data), name);
      }
      assert.deepEqual(read.metadata, { ...metadata, pad: "x".repeat(n) });
    }
  });

  test("without metadata there is no __metadata__ entry; the header-only read agrees", () => {
    const file = tmpFile();
    writeSafetensors(file, new Map([["w", { shape: [2], data: new Float32Array([1, 2]) }]]));
    const header = readSafetensorsHeader(file);
    assert.deepEqual(header.metadata, {});
    assert.deepEqual([...header.tensors], [["w", { dtype: "F32", shape: [2], dataOffsets: [0, 8] }]]);
    assert.equal(header.dataStart % 8, 0);
    assert.equal(fs.statSync(file).size, header.dataStart + 8);
  });

  test("the writer rejects a tensor whose data does not match its shape, naming it", () => {
    const file = tmpFile();
    throwsData(
      () =>
        writeSafetensors(
          file,
          new Map([["blocks.0.norm1.weight", { shape: [4], data: new Float32Array(3) }]]),
        ),
      /tensor "blocks\.0\.norm1\.weight": shape \[4\] needs 4 values, got 3/,
      file,
    );
    assert.equal(fs.existsSync(file), false);
  });
});

describe("safetensors dtypes", () => {
  test("F16 and BF16 decode to the exact float32 values", () => {
    const f16 = [
      [0x3c00, 1],
      [0xc000, -2],
      [0x3555, 0.333251953125],
      [0x7bff, 65504],
      [0x0400, 2 ** -14],
      [0x0001, 2 ** -24],
      [0x8000, -0],
      [0x7c00, Number.POSITIVE_INFINITY],
      [0xfc00, Number.NEGATIVE_INFINITY],
      [0x7e00, Number.NaN],
    ];
    const bf16 = [
      [0x3f80, 1],
      [0xc040, -3],
      [0x3eab, 0.333984375],
      [0x7f7f, 3.3895313892515355e38],
      [0x0001, 9.183549615799121e-41],
      [0xff80, Number.NEGATIVE_INFINITY],
    ];
    // A 1-byte U8 tensor first puts every later tensor at an odd offset: reads must not rely on alignment.
    const parts = [Uint8Array.of(7), new Uint8Array(new Uint16Array(f16.map(([h]) => h)).buffer)];
    parts.push(new Uint8Array(new Uint16Array(bf16.map(([h]) => h)).buffer));
    parts.push(new Uint8Array(new Float64Array([0.1, -1e300]).buffer));
    parts.push(new Uint8Array(new BigInt64Array([-5n, 1n << 40n]).buffer));
    parts.push(new Uint8Array(new Float32Array([0.5, -7]).buffer));
    const data = Buffer.concat(parts);
    let at = 0;
    const span = (n: number) => {
      at += n;
      return [at - n, at];
    };
    const header = {
      flag: { dtype: "U8", shape: [1], data_offsets: span(1) },
      half: { dtype: "F16", shape: [f16.length], data_offsets: span(2 * f16.length) },
      brain: { dtype: "BF16", shape: [2, 3], data_offsets: span(2 * bf16.length) },
      double: { dtype: "F64", shape: [2], data_offsets: span(16) },
      long: { dtype: "I64", shape: [2], data_offsets: span(16) },
      single: { dtype: "F32", shape: [2], data_offsets: span(8) },
    };
    const { tensors } = readSafetensors(rawFile(header, data));
    assert.deepEqual(
      [...tensors.get("half")!.data],
      f16.map(([, v]) => v),
    );
    assert.ok(Object.is(tensors.get("half")!.data[6], -0));
    assert.deepEqual(
      [...tensors.get("brain")!.data],
      bf16.map(([, v]) => v),
    );
    assert.deepEqual(tensors.get("brain")!.shape, [2, 3]);
    assert.deepEqual([...tensors.get("double")!.data], [Math.fround(0.1), Number.NEGATIVE_INFINITY]);
    assert.deepEqual([...tensors.get("long")!.data], [-5, 2 ** 40]);
    assert.deepEqual([...tensors.get("single")!.data], [0.5, -7]);
    assert.deepEqual([...tensors.get("flag")!.data], [7]);
    assert.deepEqual(
      [...tensors.values()].map((t) => t.dtype),
      ["U8", "F16", "BF16", "F64", "I64", "F32"],
    );
  });

  test("F8 is refused on read but its header still parses", () => {
    const file = rawFile({ q: { dtype: "F8_E4M3", shape: [2], data_offsets: [0, 2] } }, Uint8Array.of(1, 2));
    throwsData(() => readSafetensors(file), /tensor "q": dtype F8_E4M3 is not supported/, file);
    assert.equal(readSafetensorsHeader(file).tensors.get("q")!.dtype, "F8_E4M3");
  });
});

/** Key -> shape that timm's VisionTransformer(**timm_kwargs) has (README "timm key names"). */
function expectedShapes(spec: {
  distilled: boolean;
  timm_kwargs: Record<string, number | boolean | string>;
  derived: { num_patches: number; num_prefix_tokens: number; mlp_hidden_dim: number; use_fc_norm: boolean };
}): Map<string, number[]> {
  const k = spec.timm_kwargs;
  const [D, C, P, K, depth] = [k.embed_dim, k.in_chans, k.patch_size, k.num_classes, k.depth] as number[];
  const Dh = spec.derived.mlp_hidden_dim;
  const T = spec.derived.num_patches + spec.derived.num_prefix_tokens;
  const s = new Map<string, number[]>();
  if (k.class_token) s.set("cls_token", [1, 1, D]);
  if (spec.distilled) s.set("dist_token", [1, 1, D]);
  s.set("pos_embed", [1, T, D]);
  s.set("patch_embed.proj.weight", [D, C, P, P]);
  s.set("patch_embed.proj.bias", [D]);
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}.`;
    for (const [name, w] of [
      ["norm1", [D]],
      ["attn.qkv", [3 * D, D]],
      ["attn.proj", [D, D]],
      ["norm2", [D]],
      ["mlp.fc1", [Dh, D]],
      ["mlp.fc2", [D, Dh]],
    ] as const) {
      s.set(`${b}${name}.weight`, [...w]);
      s.set(`${b}${name}.bias`, [w[0]]);
    }
  }
  const norm = spec.derived.use_fc_norm ? "fc_norm" : "norm";
  s.set(`${norm}.weight`, [D]);
  s.set(`${norm}.bias`, [D]);
  for (const head of spec.distilled ? ["head", "head_dist"] : ["head"]) {
    s.set(`${head}.weight`, [K, D]);
    s.set(`${head}.bias`, [K]);
  }
  return s;
}

describe("parity fixture files", () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, "manifest.json"), "utf8"));
  test("the manifest lists cases", () => assert.ok(manifest.cases.length >= 1));
  for (const c of manifest.cases as {
    name: string;
    json: string;
    files: Record<string, { bytes: number }>;
  }[]) {
    test(`${c.name}: state dict keys and shapes are timm's`, () => {
      const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, c.json), "utf8"));
      const file = path.join(FIXTURES, spec.files.state_dict);
      const { tensors } = readSafetensors(file);
      const want = expectedShapes(spec);
      assert.deepEqual([...tensors.keys()].sort(), [...want.keys()].sort());
      let params = 0;
      for (const [name, t] of tensors) {
        assert.equal(t.dtype, "F32");
        assert.deepEqual(t.shape, want.get(name), name);
        assert.equal(
          t.data.length,
          t.shape.reduce((a, b) => a * b, 1),
        );
        assert.ok(t.data.every(Number.isFinite), `${name} is finite`);
        params += t.data.length;
      }
      assert.equal(params, spec.derived.num_params);
      // The header-only read sees the same tensors without touching the data.
      const header = readSafetensorsHeader(file);
      assert.deepEqual(
        [...header.tensors].map(([n, t]) => [n, t.shape]),
        [...tensors].map(([n, t]) => [n, t.shape]),
      );
      assert.equal(header.dataStart + params * 4, c.files[spec.files.state_dict].bytes);
    });

    test(`${c.name}: intermediates and grads files read`, () => {
      const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, c.json), "utf8"));
      const inter = readSafetensors(path.join(FIXTURES, spec.files.intermediates)).tensors;
      const input = inter.get("input")!;
      assert.deepEqual(input.shape, spec.input.shape);
      const bin = fs.readFileSync(path.join(FIXTURES, spec.files.input));
      const raw = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
      assert.deepEqual(bits(input.data), bits(raw), "input.bin equals the intermediates' input");
      const logits = inter.get("logits")!;
      assert.deepEqual(logits.data, Float32Array.from(spec.expected.logits.flat()));
      if (spec.files.grads) {
        const grads = readSafetensors(path.join(FIXTURES, spec.files.grads)).tensors;
        const want = expectedShapes(spec);
        assert.deepEqual([...grads.keys()].sort(), [...want.keys()].sort());
        for (const [name, g] of grads) assert.deepEqual(g.shape, want.get(name), name);
      }
    });
  }
});

describe("malformed safetensors files: one named DataError each", () => {
  const f32 = (n: number) => new Uint8Array(new Float32Array(n).buffer);

  test("shorter than 8 bytes", () => {
    const file = tmpFile();
    fs.writeFileSync(file, Uint8Array.of(1, 2, 3, 4, 5));
    throwsData(() => readSafetensors(file), /not a safetensors file: 5 bytes, shorter than the 8-byte/, file);
  });

  test("header length beyond the file (no huge allocation)", () => {
    const header = { w: { dtype: "F32", shape: [1], data_offsets: [0, 4] } };
    const justPast = BigInt(JSON.stringify(header).length + 4 + 1);
    for (const length of [1n << 40n, (1n << 64n) - 1n, justPast]) {
      const file = rawFile(header, f32(1), length);
      throwsData(
        () => readSafetensorsHeader(file),
        new RegExp(`header length ${length} runs past the end`),
        file,
      );
    }
  });

  test("header length over the cap, in a file that is long enough", () => {
    const file = tmpFile();
    const head = Buffer.alloc(8);
    head.writeBigUInt64LE(BigInt(MAX_HEADER_BYTES + 8));
    fs.writeFileSync(file, head);
    fs.truncateSync(file, MAX_HEADER_BYTES + 64); // sparse: cheap on disk
    throwsData(() => readSafetensors(file), /header length 104857608 exceeds the 104857600-byte limit/, file);
  });

  test("invalid JSON, and JSON that is not an object", () => {
    const bad = rawFile('{"w": {"dtype": "F32", ');
    throwsData(() => readSafetensors(bad), /header is not valid JSON/, bad);
    const arr = rawFile("[1, 2]");
    throwsData(() => readSafetensors(arr), /header is not a JSON object/, arr);
  });

  test("unknown dtype", () => {
    const file = rawFile(
      { "blocks.0.attn.qkv.weight": { dtype: "F33", shape: [1], data_offsets: [0, 4] } },
      f32(1),
    );
    throwsData(
      () => readSafetensors(file),
      /tensor "blocks\.0\.attn\.qkv\.weight": unknown dtype "F33"/,
      file,
    );
  });

  test("data_offsets out of range", () => {
    const file = rawFile({ head: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, f32(3));
    throwsData(
      () => readSafetensors(file),
      /tensor "head": data_offsets \[0, 16\] run past the end of the data section \(12 bytes\)/,
      file,
    );
  });

  test("data_offsets that are not an ordered pair of integers", () => {
    for (const offsets of [[8, 4], [0], [0, 4.5], [-4, 0], "0-4"]) {
      const file = rawFile({ w: { dtype: "F32", shape: [1], data_offsets: offsets } }, f32(2));
      throwsData(
        () => readSafetensors(file),
        /tensor "w": data_offsets .* is not a \[begin, end\] pair/,
        file,
      );
    }
  });

  test("overlapping tensors", () => {
    const file = rawFile(
      {
        a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
        b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
      },
      f32(3),
    );
    throwsData(
      () => readSafetensors(file),
      /tensor "b": data_offsets \[4,12\] overlap tensor "a" \[0,8\]/,
      file,
    );
  });

  test("byte count that does not match shape x dtype", () => {
    const file = rawFile({ cls_token: { dtype: "F32", shape: [1, 1, 3], data_offsets: [0, 8] } }, f32(2));
    throwsData(
      () => readSafetensors(file),
      /tensor "cls_token": data_offsets \[0, 8\] hold 8 bytes but shape \[1, 1, 3\] of F32 needs 12/,
      file,
    );
    const half = rawFile({ w: { dtype: "F16", shape: [3], data_offsets: [0, 12] } }, f32(3));
    throwsData(() => readSafetensors(half), /hold 12 bytes but shape \[3\] of F16 needs 6/, half);
  });

  test("negative, fractional or non-numeric shapes", () => {
    for (const shape of [[-1, 2], [1.5], ["3"], 3, [2 ** 53]]) {
      const file = rawFile({ pos_embed: { dtype: "F32", shape, data_offsets: [0, 4] } }, f32(1));
      throwsData(
        () => readSafetensors(file),
        /tensor "pos_embed": shape .* is not a list of non-negative integers/,
        file,
      );
    }
  });

  test("metadata that is not a string map", () => {
    const file = rawFile({ __metadata__: { epoch: 3 } });
    throwsData(() => readSafetensors(file), /__metadata__ "epoch" is not a string \(3\)/, file);
  });

  test("a missing file", () => {
    const file = path.join(tmp, "nope.safetensors");
    throwsData(() => readSafetensors(file), /cannot read .*nope\.safetensors/, file);
  });
});

describe("writeFileAtomic", () => {
  test("replaces the file and leaves no temp file", () => {
    const file = tmpFile("metrics.json");
    writeFileAtomic(file, "old");
    writeFileAtomic(file, Uint8Array.of(110, 101, 119));
    assert.equal(fs.readFileSync(file, "utf8"), "new");
    writeFileAtomic(file, [Buffer.from("chunk "), Buffer.from("by chunk")]);
    assert.equal(fs.readFileSync(file, "utf8"), "chunk by chunk");
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ["metrics.json"]);
  });

  test("a failure while writing keeps the old file and removes the temp file", () => {
    const file = tmpFile("last.safetensors");
    writeFileAtomic(file, "previous checkpoint");
    function* failing(): Generator<Uint8Array> {
      yield Buffer.from("half of a new checkpoint");
      throw new Error("disk full (simulated)");
    }
    assert.throws(
      () => writeFileAtomic(file, failing()),
      (err: unknown) =>
        err instanceof VitError && /cannot write .*last\.safetensors: disk full/.test(err.message),
    );
    assert.equal(fs.readFileSync(file, "utf8"), "previous checkpoint");
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ["last.safetensors"]);
  });

  test("a failing rename (target is a non-empty folder) removes the temp file", () => {
    const target = tmpFile("best.safetensors");
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, "keep"), "x");
    assert.throws(() => writeFileAtomic(target, "data"), /cannot write .*best\.safetensors/);
    assert.deepEqual(fs.readdirSync(path.dirname(target)), ["best.safetensors"]);
    assert.equal(fs.readFileSync(path.join(target, "keep"), "utf8"), "x");
  });

  test("a folder that does not exist is a named error", () => {
    const file = path.join(tmp, "missing-dir", "x.json");
    assert.throws(() => writeFileAtomic(file, "{}"), /cannot write .*missing-dir.*x\.json: ENOENT/);
  });
});
