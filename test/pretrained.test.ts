/**
 * Loading pretrained weights (src/model/pretrained.ts) and `vit import`, on the timm-parity
 * fixtures (test/fixtures/timm-parity): files with Hugging Face names, F16 / BF16 tensors and
 * Google's .npz layout are built here from each fixture by the documented renamings (written out
 * by hand, independently of src/io), loaded, and must reproduce timm's logits. Then resampled
 * loading, head replacement, key errors, other architectures, config.json, and the CLI.
 *
 * Logit tolerance: the README's float32 bound, 1e-5 + 1e-5|x|.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import * as zlib from "node:zlib";
import * as tf from "@tensorflow/tfjs";
import { resolveConfig } from "../src/config/index.js";
import { ModelConfigSchema } from "../src/config/schema.js";
import { DataError, UsageError } from "../src/errors.js";
import { readNpz } from "../src/io/npz.js";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import { createModel, type VisionTransformer } from "../src/model/index.js";
import type { StateDict, TensorData } from "../src/tensor.js";
import { writeWeights } from "../src/weights/checkpoint.js";
import { exportCheckpoint, readCheckpoint } from "../src/weights/export.js";
import { importWeights } from "../src/weights/import.js";
import { loadInferenceModel } from "../src/weights/model_source.js";
import { loadPretrained, readPretrained } from "../src/weights/pretrained.js";
import { toHfByHand } from "./helpers.js";
import { assertClose, FIXTURES, runVit } from "./support.js";

const _ROOT = path.resolve(import.meta.dirname, "..");
const TOL = 1e-5;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vit-pretrained-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
before(async () => {
  await tf.setBackend("cpu");
});

interface CaseSpec {
  distilled: boolean;
  timm_kwargs: Record<string, unknown> & {
    num_classes: number;
    embed_dim: number;
    num_heads: number;
    class_token: boolean;
    img_size: number;
    patch_size: number;
  };
  derived: { use_fc_norm: boolean; num_prefix_tokens: number };
  files: { state_dict: string; input: string };
  input: { shape: number[] };
  expected: { logits: number[][] };
  resample_pos_embed?: { old_grid: number[]; new_grid: number[]; values: unknown }[];
}

const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, "manifest.json"), "utf8")) as {
  cases: { name: string; json: string }[];
};
const cases = manifest.cases.map((c) => {
  const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, c.json), "utf8")) as CaseSpec;
  const file = path.join(FIXTURES, spec.files.state_dict);
  return { name: c.name, spec, file, sd: readSafetensors(file).tensors as StateDict };
});
const byName = (name: string) => cases.find((c) => c.name === name)!;

function buildModel(spec: CaseSpec, overrides: Record<string, unknown> = {}): VisionTransformer {
  const cfg = ModelConfigSchema.parse({
    ...spec.timm_kwargs,
    distilled: spec.distilled,
    drop_path_rate: 0,
    ...overrides,
  });
  return createModel({ ...cfg, num_classes: cfg.num_classes ?? spec.timm_kwargs.num_classes }, { seed: 7 });
}

function logitsOf(model: VisionTransformer, spec: CaseSpec): Float32Array {
  const bytes = fs.readFileSync(path.join(FIXTURES, spec.files.input));
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const [b, c, h, w] = spec.input.shape;
  return tf.tidy(() => {
    const x = tf.transpose(tf.tensor4d(data, [b, c, h, w]), [0, 2, 3, 1]) as tf.Tensor4D;
    return (model.forward(x, { training: false }) as tf.Tensor).dataSync() as Float32Array;
  });
}

function param(model: VisionTransformer, name: string): Float32Array {
  const v = model.namedParameters().find(([n]) => n === name);
  assert.ok(v, `model has ${name}`);
  return v[1].dataSync() as Float32Array;
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Loads with the log captured; returns the report and the lines. */
function load(model: VisionTransformer, file: string, allowPartial = false) {
  const lines: string[] = [];
  const report = loadPretrained(model, file, { allowPartial, log: (l) => lines.push(l) });
  return { report, lines };
}

// ---- the documented renamings, by hand -------------------------------------------------------

/** Row-major transpose of a 2-D tensor. */
function t2(t: TensorData): TensorData {
  const [r, c] = t.shape;
  const data = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) data[j * r + i] = t.data[i * c + j];
  return { shape: [c, r], data };
}

/** timm -> Google's vision_transformer .npz layout, the inverse of timm's _load_weights. */
function toGoogle(sd: StateDict, heads: number): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  const get = (k: string) => sd.get(k)!;
  const w = get("patch_embed.proj.weight");
  const [D, C, P] = w.shape;
  const hwio = new Float32Array(w.data.length);
  for (let o = 0; o < D; o++)
    for (let i = 0; i < C; i++)
      for (let y = 0; y < P; y++)
        for (let x = 0; x < P; x++)
          hwio[((y * P + x) * C + i) * D + o] = w.data[((o * C + i) * P + y) * P + x];
  out.set("embedding/kernel", { shape: [P, P, C, D], data: hwio });
  out.set("embedding/bias", get("patch_embed.proj.bias"));
  out.set("cls", get("cls_token"));
  out.set("Transformer/posembed_input/pos_embedding", get("pos_embed"));
  out.set("Transformer/encoder_norm/scale", get("norm.weight"));
  out.set("Transformer/encoder_norm/bias", get("norm.bias"));
  out.set("head/kernel", t2(get("head.weight")));
  out.set("head/bias", get("head.bias"));
  const hd = D / heads;
  for (let i = 0; get(`blocks.${i}.norm1.weight`); i++) {
    const b = `Transformer/encoderblock_${i}/`;
    const mha = `${b}MultiHeadDotProductAttention_1/`;
    out.set(`${b}LayerNorm_0/scale`, get(`blocks.${i}.norm1.weight`));
    out.set(`${b}LayerNorm_0/bias`, get(`blocks.${i}.norm1.bias`));
    out.set(`${b}LayerNorm_2/scale`, get(`blocks.${i}.norm2.weight`));
    out.set(`${b}LayerNorm_2/bias`, get(`blocks.${i}.norm2.bias`));
    const qkv = get(`blocks.${i}.attn.qkv.weight`);
    const qkvBias = get(`blocks.${i}.attn.qkv.bias`);
    ["query", "key", "value"].forEach((n, j) => {
      const rows = { shape: [D, D], data: qkv.data.slice(j * D * D, (j + 1) * D * D) };
      out.set(`${mha}${n}/kernel`, { shape: [D, heads, hd], data: t2(rows).data }); // [D_in, H, hd]
      out.set(`${mha}${n}/bias`, { shape: [heads, hd], data: qkvBias.data.slice(j * D, (j + 1) * D) });
    });
    // proj.weight [D_out, H*hd] -> [H, hd, D_out]
    out.set(`${mha}out/kernel`, {
      shape: [heads, hd, D],
      data: t2(get(`blocks.${i}.attn.proj.weight`)).data,
    });
    out.set(`${mha}out/bias`, get(`blocks.${i}.attn.proj.bias`));
    for (const r of [0, 1]) {
      out.set(`${b}MlpBlock_3/Dense_${r}/kernel`, t2(get(`blocks.${i}.mlp.fc${r + 1}.weight`)));
      out.set(`${b}MlpBlock_3/Dense_${r}/bias`, get(`blocks.${i}.mlp.fc${r + 1}.bias`));
    }
  }
  return out;
}

// ---- file writers the library does not have ----------------------------------------------------

/** float32 -> float16 bits, round to nearest even (normal and subnormal ranges). */
function toHalf(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}

/** float32 -> bfloat16 bits, round to nearest even. */
function toBf16(v: number): number {
  const x = new Uint32Array(new Float32Array([v]).buffer)[0];
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** A safetensors file of 16-bit tensors (writeSafetensors only writes F32). */
function writeHalfSafetensors(file: string, sd: StateDict, dtype: "F16" | "BF16"): void {
  const convert = dtype === "F16" ? toHalf : toBf16;
  const header: Record<string, unknown> = {};
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of sd) {
    const u16 = Uint16Array.from(t.data, convert);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + u16.byteLength] };
    chunks.push(Buffer.from(u16.buffer));
    offset += u16.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...chunks]));
}

/** An .npz as np.savez (stored) or np.savez_compressed (deflate) writes it. */
function writeNpz(file: string, arrays: Map<string, TensorData>, deflate: boolean): void {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [key, t] of arrays) {
    let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${t.shape.join(", ")}${t.shape.length === 1 ? "," : ""}), }`;
    header += `${" ".repeat(63 - ((10 + header.length) % 64))}\n`;
    const hl = Buffer.alloc(2);
    hl.writeUInt16LE(header.length);
    const npy = Buffer.concat([
      Buffer.from("\x93NUMPY\x01\x00", "latin1"),
      hl,
      Buffer.from(header, "latin1"),
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
    ]);
    const body = deflate ? zlib.deflateRawSync(npy) : npy;
    const name = Buffer.from(`${key}.npy`);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(deflate ? 8 : 0, 8);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(npy.length, 22);
    local.writeUInt16LE(name.length, 26);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(deflate ? 8 : 0, 10);
    cd.writeUInt32LE(body.length, 20);
    cd.writeUInt32LE(npy.length, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt32LE(offset, 42);
    locals.push(local, name, body);
    central.push(cd, name);
    offset += 30 + name.length + body.length;
  }
  const cdBytes = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(arrays.size, 8);
  end.writeUInt16LE(arrays.size, 10);
  end.writeUInt32LE(cdBytes.length, 12);
  end.writeUInt32LE(offset, 16);
  fs.writeFileSync(file, Buffer.concat([...locals, cdBytes, end]));
}

function hfConfig(spec: CaseSpec, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const k = spec.timm_kwargs;
  return {
    architectures: [spec.distilled ? "DeiTForImageClassificationWithTeacher" : "ViTForImageClassification"],
    model_type: spec.distilled ? "deit" : "vit",
    hidden_size: k.embed_dim,
    num_hidden_layers: k.depth,
    num_attention_heads: k.num_heads,
    intermediate_size: k.embed_dim * (k.mlp_ratio as number),
    hidden_act: "gelu",
    layer_norm_eps: 1e-12,
    image_size: k.img_size,
    patch_size: k.patch_size,
    num_channels: k.in_chans,
    qkv_bias: true,
    id2label: Object.fromEntries(Array.from({ length: k.num_classes }, (_, i) => [String(i), `class_${i}`])),
    ...extra,
  };
}

/** A folder holding one weights file (and optionally a config.json), as a hub download is laid out. */
function hubDir(name: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

// ---- tests -----------------------------------------------------------------------------------

describe("every parity case reproduces timm's logits from a converted file", () => {
  for (const { name, spec, sd } of cases) {
    const want = spec.expected.logits.flat();
    const hfKind = spec.distilled ? "DeiTWithTeacher" : "ViTForImageClassification";
    const hasHf = spec.timm_kwargs.class_token && !spec.derived.use_fc_norm;

    test(`${name}: Hugging Face names (${hasHf ? hfKind : "no HF class: skipped"})`, { skip: !hasHf }, () => {
      const file = path.join(hubDir(`hf_${name}`), "model.safetensors");
      writeSafetensors(file, toHfByHand(sd, hfKind));
      const model = buildModel(spec);
      const { report, lines } = load(model, file);
      assert.equal(report.format, "hf");
      assert.deepEqual(report.reinitialized, []);
      assert.deepEqual(lines, []);
      const worst = assertClose(logitsOf(model, spec), want, TOL, `${name} HF logits`);
      assert.ok(worst < TOL);
      model.dispose();
    });

    test(`${name}: F16 tensors load as their exact float32 values`, () => {
      const file = path.join(tmp, `${name}.f16.safetensors`);
      writeHalfSafetensors(file, sd, "F16");
      const rounded: StateDict = new Map(
        [...sd].map(([k, t]) => [
          k,
          { shape: t.shape, data: Float32Array.from(t.data, (v) => halfValue(toHalf(v))) },
        ]),
      );
      const reference = buildModel(spec);
      reference.loadStateDict(rounded);
      const model = buildModel(spec);
      load(model, file);
      const got = logitsOf(model, spec);
      // Same weights as the F16-rounded reference: float32 noise only.
      assertClose(got, logitsOf(reference, spec), 1e-6, `${name} F16 logits vs F16-rounded F32`);
      // And still timm's model, F16 rounding aside (|w| ~ 1 rounds by ~5e-4).
      const drift = Math.max(...got.map((v, i) => Math.abs(v - want[i])));
      assert.ok(drift > 1e-6 && drift < 0.1, `${name}: F16 logits drift ${drift} from timm's`);
      model.dispose();
      reference.dispose();
    });

    const npz = spec.timm_kwargs.class_token && !spec.derived.use_fc_norm && !spec.distilled;
    test(`${name}: Google .npz layout (${npz ? "stored and deflated" : "not expressible: skipped"})`, {
      skip: !npz,
    }, () => {
      for (const deflate of [false, true]) {
        const file = path.join(tmp, `${name}.${deflate ? "z" : "s"}.npz`);
        writeNpz(file, toGoogle(sd, spec.timm_kwargs.num_heads), deflate);
        const model = buildModel(spec);
        const { report } = load(model, file);
        assert.equal(report.format, "npz");
        assertClose(logitsOf(model, spec), want, TOL, `${name} npz logits`);
        model.dispose();
      }
    });
  }

  test("vit_cls: BF16 tensors load as their exact float32 values", () => {
    const { spec, sd } = byName("vit_cls");
    const file = path.join(tmp, "vit_cls.bf16.safetensors");
    writeHalfSafetensors(file, sd, "BF16");
    const loaded = readPretrained(file).stateDict.get("blocks.0.attn.qkv.weight")!;
    const src = sd.get("blocks.0.attn.qkv.weight")!.data;
    loaded.data.forEach((v, i) => {
      assert.equal(v, new Float32Array(new Uint32Array([toBf16(src[i]) << 16]).buffer)[0]);
    });
    const model = buildModel(spec);
    load(model, file);
    const drift = Math.max(
      ...logitsOf(model, spec).map((v, i) => Math.abs(v - spec.expected.logits.flat()[i])),
    );
    assert.ok(drift > 1e-5 && drift < 0.5, `BF16 drift ${drift}`);
    model.dispose();
  });
});

function halfValue(h: number): number {
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  return exp === 0 ? sign * frac * 2 ** -24 : sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

describe("loading at another image size resamples pos_embed like timm", () => {
  for (const { name, spec, file, sd } of cases) {
    for (const r of spec.resample_pos_embed ?? []) {
      test(`${name}: ${r.old_grid.join("x")} -> ${r.new_grid.join("x")}`, () => {
        const model = buildModel(spec, { img_size: r.new_grid[0] * spec.timm_kwargs.patch_size });
        const { report, lines } = load(model, file);
        assert.deepEqual(report.resampledFrom, r.old_grid);
        assert.match(lines.join("\n"), /pos_embed resampled from a 4x4 to a \dx\d patch grid/);
        assertClose(param(model, "pos_embed"), (r.values as number[][][]).flat(2), TOL, "pos_embed");
        // Everything else is the file's, bit for bit.
        assert.deepEqual(
          bits(param(model, "blocks.1.mlp.fc2.weight")),
          bits(sd.get("blocks.1.mlp.fc2.weight")!.data),
        );
        model.dispose();
      });
    }
  }
});

describe("a different class count re-initializes the head(s)", () => {
  test("vit_cls into 7 classes: warning, new head shape at the model's init, the rest equal", () => {
    const { spec, file, sd } = byName("vit_cls");
    const model = buildModel(spec, { num_classes: 7 });
    const fresh = buildModel(spec, { num_classes: 7 });
    const { report, lines } = load(model, file);
    assert.deepEqual(report.reinitialized, ["head"]);
    assert.deepEqual(lines, ["warning: head re-initialized: the file's head has 5 classes, the model's 7"]);
    const head = model.namedParameters().find(([n]) => n === "head.weight")![1];
    assert.deepEqual(head.shape, [7, spec.timm_kwargs.embed_dim]);
    assert.deepEqual(bits(param(model, "head.weight")), bits(param(fresh, "head.weight")));
    for (const key of sd.keys()) {
      if (key.startsWith("head.")) continue;
      assert.deepEqual(bits(param(model, key)), bits(sd.get(key)!.data), key);
    }
    model.dispose();
    fresh.dispose();
  });

  test("deit_distilled into 3 classes: head and head_dist both re-initialized", () => {
    const { spec, file } = byName("deit_distilled");
    const model = buildModel(spec, { num_classes: 3 });
    const { report, lines } = load(model, file);
    assert.deepEqual(report.reinitialized, ["head", "head_dist"]);
    assert.equal(lines.length, 2);
    assert.match(lines[1], /^warning: head_dist re-initialized/);
    model.dispose();
  });

  test("a DeiTForImageClassification file (no distillation head) into a distilled model", () => {
    const { spec, sd } = byName("deit_distilled");
    const file = path.join(hubDir("deit_no_teacher"), "model.safetensors");
    writeSafetensors(file, toHfByHand(sd, "DeiTForImageClassification"));
    const model = buildModel(spec);
    const { report, lines } = load(model, file);
    assert.deepEqual(report.reinitialized, ["head_dist"]);
    assert.deepEqual(lines, [`warning: head_dist re-initialized: ${file} has no head_dist`]);
    assert.deepEqual(bits(param(model, "head.weight")), bits(sd.get("head.weight")!.data));
    model.dispose();
  });

  test("the file's classes are kept when the head is", () => {
    const { spec, sd } = byName("vit_cls");
    const dir = hubDir("names");
    writeSafetensors(path.join(dir, "model.safetensors"), toHfByHand(sd, "ViTForImageClassification"));
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(hfConfig(spec)));
    const same = buildModel(spec);
    assert.deepEqual(
      load(same, path.join(dir, "model.safetensors")).report.classNames,
      [0, 1, 2, 3, 4].map((i) => `class_${i}`),
    );
    const other = buildModel(spec, { num_classes: 2 });
    assert.equal(load(other, path.join(dir, "model.safetensors")).report.classNames, null);
    same.dispose();
    other.dispose();
  });
});

describe("keys that do not fit", () => {
  const { spec, sd } = byName("vit_cls");
  const broken = new Map(sd);
  broken.delete("blocks.1.norm1.weight");
  broken.set("blocks.0.ls1.gamma", { shape: [48], data: new Float32Array(48) });
  const file = path.join(tmp, "broken.safetensors");
  writeSafetensors(file, broken);

  test("missing and unexpected keys: one DataError listing both", () => {
    const model = buildModel(spec);
    const before = param(model, "blocks.0.norm1.weight").slice();
    assert.throws(
      () => load(model, file),
      (e: unknown) =>
        e instanceof DataError &&
        e.message ===
          `${file}: does not fit the model: 1 missing (blocks.1.norm1.weight), 1 unexpected (blocks.0.ls1.gamma) key(s)`,
    );
    // Nothing was loaded.
    assert.deepEqual(param(model, "blocks.0.norm1.weight"), before);
    model.dispose();
  });

  test("allowPartial: a warning, the rest loaded, the missing weight at its init", () => {
    const model = buildModel(spec);
    const init = param(model, "blocks.1.norm1.weight").slice();
    const { report, lines } = load(model, file, true);
    assert.deepEqual(report.missing, ["blocks.1.norm1.weight"]);
    assert.deepEqual(report.unexpected, ["blocks.0.ls1.gamma"]);
    assert.match(lines[0], /^warning: .*loading what fits: 1 missing \(blocks\.1\.norm1\.weight\)/);
    assert.deepEqual(param(model, "blocks.1.norm1.weight"), init);
    assert.deepEqual(
      bits(param(model, "blocks.1.norm2.weight")),
      bits(sd.get("blocks.1.norm2.weight")!.data),
    );
    model.dispose();
  });

  test("a deeper file names the depths", () => {
    const model = buildModel(spec, { depth: 1 });
    assert.throws(
      () => load(model, path.join(FIXTURES, spec.files.state_dict)),
      /\(file: depth 2; model: depth 1\)/,
    );
    model.dispose();
  });
});

describe("weights of another architecture are a clear error", () => {
  const { spec, file } = byName("vit_cls");

  test("a ResNet state dict", () => {
    const resnet = path.join(tmp, "resnet.safetensors");
    writeSafetensors(
      resnet,
      new Map([["conv1.weight", { shape: [4, 3, 7, 7], data: new Float32Array(588) }]]),
    );
    const model = buildModel(spec);
    assert.throws(
      () => load(model, resnet),
      (e: unknown) => e instanceof DataError && /not a ViT\/DeiT state dict/.test(e.message),
    );
    model.dispose();
  });

  test("a wider ViT", () => {
    const model = buildModel(spec, { embed_dim: 96 });
    assert.throws(
      () => load(model, file),
      (e: unknown) =>
        e instanceof DataError &&
        e.message.startsWith(
          `${file}: weights of another architecture (file: embed_dim 48; model: embed_dim 96): cls_token [1,1,48]`,
        ),
    );
    model.dispose();
  });

  test("a DeiT (distillation token) into a ViT", () => {
    const model = buildModel(spec);
    assert.throws(
      () => load(model, byName("deit_distilled").file),
      /prefix tokens \[cls_token, dist_token\] but the model \[cls_token\]/,
    );
    model.dispose();
  });

  test("a config.json of another model type", () => {
    const dir = hubDir("swin");
    writeSafetensors(path.join(dir, "model.safetensors"), byName("vit_cls").sd);
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "swin" }));
    const model = buildModel(spec);
    assert.throws(
      () => load(model, path.join(dir, "model.safetensors")),
      /model_type "swin" is not a ViT or DeiT model/,
    );
    model.dispose();
  });

  test("a Google .npz with a MAP head lists it as unexpected", () => {
    const arrays = toGoogle(byName("vit_cls").sd, spec.timm_kwargs.num_heads);
    arrays.set("MAPHead_0/probe", { shape: [1, 1, 48], data: new Float32Array(48) });
    const npz = path.join(tmp, "map.npz");
    writeNpz(npz, arrays, false);
    const model = buildModel(spec);
    assert.throws(() => load(model, npz), /1 unexpected \(MAPHead_0\/probe\)/);
    model.dispose();
  });
});

describe("a Hugging Face config.json beside the weights", () => {
  const { spec, sd } = byName("vit_cls");

  test("layer_norm_eps 1e-12 is a warning; the logits are still timm's", () => {
    const dir = hubDir("eps");
    writeSafetensors(path.join(dir, "model.safetensors"), toHfByHand(sd, "ViTForImageClassification"));
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(hfConfig(spec)));
    const model = buildModel(spec);
    const { lines } = load(model, path.join(dir, "model.safetensors"));
    assert.deepEqual(lines, [
      `warning: ${path.join(dir, "config.json")}: layer_norm_eps 1e-12; this framework uses timm's 1e-6, so outputs can differ slightly from transformers'`,
    ]);
    assertClose(logitsOf(model, spec), spec.expected.logits.flat(), TOL, "logits");
    model.dispose();
  });

  test("num_attention_heads that differ from the model's are an error (no shape shows them)", () => {
    const dir = hubDir("heads");
    writeSafetensors(path.join(dir, "model.safetensors"), toHfByHand(sd, "ViTForImageClassification"));
    fs.writeFileSync(
      path.join(dir, "config.json"),
      JSON.stringify(hfConfig(spec, { num_attention_heads: 4 })),
    );
    const model = buildModel(spec);
    assert.throws(
      () => load(model, path.join(dir, "model.safetensors")),
      /the weights have 4 attention heads but the model has num_heads 3/,
    );
    model.dispose();
  });
});

test("a 1-channel model sums the RGB patch embedding (timm's adapt_input_conv)", () => {
  const { spec, file, sd } = byName("vit_cls");
  const model = buildModel(spec, { in_chans: 1 });
  const { lines } = load(model, file);
  assert.match(lines[0], /summed its 3 input channels/);
  const w = sd.get("patch_embed.proj.weight")!;
  const area = w.shape[2] * w.shape[3];
  const got = param(model, "patch_embed.proj.weight");
  for (const [o, i] of [
    [0, 0],
    [47, area - 1],
  ]) {
    const want = [0, 1, 2].reduce((s, c) => s + w.data[(o * 3 + c) * area + i], 0);
    assert.ok(Math.abs(got[o * area + i] - want) < 1e-6);
  }
  model.dispose();
});

describe("importWeights (what `vit import` runs)", () => {
  test("equals createModel + loadPretrained with the config's seed, at another size and class count", () => {
    const { spec, file } = byName("vit_cls");
    const cfgFile = path.join(tmp, "cls.yaml");
    const k = spec.timm_kwargs;
    fs.writeFileSync(
      cfgFile,
      `model: {img_size: ${k.img_size}, patch_size: ${k.patch_size}, embed_dim: ${k.embed_dim}, depth: 2, num_heads: ${k.num_heads}}\ntrain: {seed: 3}\n`,
    );
    const out = path.join(tmp, "imported.safetensors");
    const lines: string[] = [];
    const result = importWeights(file, {
      out,
      config: cfgFile,
      imgSize: 48,
      numClasses: 4,
      log: (l) => lines.push(l),
    });
    assert.equal(lines.length, 2);
    assert.deepEqual(result.classes, ["0", "1", "2", "3"]);
    const model = createModel({ ...result.config.model, num_classes: 4 }, { seed: 3 });
    loadPretrained(model, file, { log: () => {} });
    const written = readSafetensors(out);
    for (const [name, t] of model.stateDict())
      assert.deepEqual(bits(written.tensors.get(name)!.data), bits(t.data), name);
    assert.equal(JSON.parse(written.metadata.config).model.img_size, 48);
    assert.equal(written.metadata.imported_from, "vit_cls.safetensors");
    model.dispose();
  });

  test("vit export --format timm, then import: config.json gives back classes and preprocessing", () => {
    const { spec, sd } = byName("vit_cls");
    const k = spec.timm_kwargs;
    const config = resolveConfig(
      {
        model: { ...k, num_classes: undefined },
        data: { mean: [0.1, 0.2, 0.3], std: [0.4, 0.5, 0.6], crop_pct: 0.95 },
      },
      { source: "test" },
    );
    const names = ["ant", "bee", "cat", "dog", "eel"];
    const ckpt = path.join(tmp, "ckpt.safetensors");
    writeWeights(ckpt, sd, { config, classes: names, epoch: 1, step: 1 });
    const [exported] = exportCheckpoint(readCheckpoint(ckpt), "timm", path.join(tmp, "timm-export"));
    const result = importWeights(exported, { out: path.join(tmp, "back.safetensors"), log: () => {} });
    assert.deepEqual(result.classes, names);
    assert.deepEqual(result.config.data.mean, [0.1, 0.2, 0.3]);
    assert.equal(result.config.data.crop_pct, 0.95);
    assert.equal(result.config.model.num_heads, k.num_heads);
    const back = readSafetensors(path.join(tmp, "back.safetensors")).tensors;
    for (const [key, t] of sd) assert.deepEqual(bits(back.get(key)!.data), bits(t.data), key);
  });

  test("a file whose num_heads nothing tells is a usage error", () => {
    assert.throws(
      () => importWeights(byName("vit_cls").file, { out: path.join(tmp, "x.safetensors"), log: () => {} }),
      (e: unknown) => e instanceof UsageError && /cannot tell num_heads from the weights/.test(e.message),
    );
  });
});

// Each child costs seconds of tsx start-up: the two run side by side.
describe("vit import (child process)", { concurrency: 2 }, () => {
  const vit = (args: string[]) => runVit(args, { cwd: tmp });

  test("HF file + config.json -> checkpoint that --checkpoint loads with timm's logits and the labels", async () => {
    const { spec, sd } = byName("deit_distilled");
    const dir = hubDir("cli_hf");
    writeSafetensors(path.join(dir, "model.safetensors"), toHfByHand(sd, "DeiTWithTeacher"));
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(hfConfig(spec)));
    const out = path.join(tmp, "cli_out", "deit.safetensors");
    const r = await vit(["import", path.join(dir, "model.safetensors"), "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${out}\n`);
    assert.match(r.stderr, /layer_norm_eps 1e-12/);
    assert.match(
      r.stderr,
      /Hugging Face names\) -> .*DeiT \(distilled\) embed_dim 48, depth 2, num_heads 3, patch 8, 32 px, 5 classes/,
    );
    const loaded = loadInferenceModel({ checkpoint: out });
    assert.deepEqual(
      loaded.classes,
      [0, 1, 2, 3, 4].map((i) => `class_${i}`),
    );
    assertClose(logitsOf(loaded.model, spec), spec.expected.logits.flat(), TOL, "imported logits");
    loaded.model.dispose();
  });

  test("a file from another architecture: exit 1, one line", async () => {
    const resnet = path.join(tmp, "resnet2.safetensors");
    writeSafetensors(resnet, new Map([["conv1.weight", { shape: [1], data: new Float32Array(1) }]]));
    const r = await vit(["import", resnet, "--out", path.join(tmp, "never.safetensors")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^\S*resnet2\.safetensors: not a ViT\/DeiT state dict: .*\n$/);
    assert.equal(fs.existsSync(path.join(tmp, "never.safetensors")), false);
  });
});

describe("readNpz on files numpy itself wrote", () => {
  // numpy 2.4: np.savez / np.savez_compressed("f.npz", a=arange(6, dtype=f4).reshape(2, 3),
  // **{"x/y/b": array([[1.5], [-2.0]])}, c=float32(7)); savez gives each member zip64 sizes.
  const files = {
    savez:
      "UEsDBC0AAAAAAAAAIQBP6QAq//////////8FABQAYS5ucHkBABAAmAAAAAAAAACYAAAAAAAAAJNOVU1QWQEAdgB7J2Rlc2NyJzogJzxmNCcsICdmb3J0cmFuX29yZGVyJzogRmFsc2UsICdzaGFwZSc6ICgyLCAzKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAKAAAAAAAAgD8AAABAAABAQAAAgEAAAKBAUEsDBC0AAAAAAAAAIQBIDVlQ//////////8JABQAeC95L2IubnB5AQAQAJAAAAAAAAAAkAAAAAAAAACTTlVNUFkBAHYAeydkZXNjcic6ICc8ZjgnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMiwgMSksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgCgAAAAAAAPg/AAAAAAAAAMBQSwMELQAAAAAAAAAhACpb2Aj//////////wUAFABjLm5weQEAEACEAAAAAAAAAIQAAAAAAAAAk05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKCksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAOBAUEsBAi0DLQAAAAAAAAAhAE/pACqYAAAAmAAAAAUAAAAAAAAAAAAAAIABAAAAAGEubnB5UEsBAi0DLQAAAAAAAAAhAEgNWVCQAAAAkAAAAAkAAAAAAAAAAAAAAIABzwAAAHgveS9iLm5weVBLAQItAy0AAAAAAAAAIQAqW9gIhAAAAIQAAAAFAAAAAAAAAAAAAACAAZoBAABjLm5weVBLBQYAAAAAAwADAJ0AAABVAgAAAAA=",
    savez_compressed:
      "UEsDBC0AAAAIAAAAIQBP6QAq//////////8FABQAYS5ucHkBABAAmAAAAAAAAABVAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqKuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GkY6CsaaOgq1CmQDLgYwaLAHEg5ABMQNQLzAAQBQSwMELQAAAAgAAAAhAEgNWVD//////////wkAFAB4L3kvYi5ucHkBABAAkAAAAAAAAABPAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqGuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GkY6CoaaOgq1CmQDLgYw+GEPoRkOAABQSwMELQAAAAgAAAAhACpb2Aj//////////wUAFABjLm5weQEAEACEAAAAAAAAAEYAAAAAAAAAm+wX6hsQychQxlCtnpJanFykbqWgbpNmoq6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkamjoKtQoUAS4GhgcOAFBLAQItAy0AAAAIAAAAIQBP6QAqVQAAAJgAAAAFAAAAAAAAAAAAAACAAQAAAABhLm5weVBLAQItAy0AAAAIAAAAIQBIDVlQTwAAAJAAAAAJAAAAAAAAAAAAAACAAYwAAAB4L3kvYi5ucHlQSwECLQMtAAAACAAAACEAKlvYCEYAAACEAAAABQAAAAAAAAAAAAAAgAEWAQAAYy5ucHlQSwUGAAAAAAMAAwCdAAAAkwEAAAAA",
  };
  for (const [how, b64] of Object.entries(files)) {
    test(how, () => {
      const file = path.join(tmp, `${how}.npz`);
      fs.writeFileSync(file, Buffer.from(b64, "base64"));
      const arrays = readNpz(file);
      assert.deepEqual([...arrays.keys()], ["a", "x/y/b", "c"]);
      assert.deepEqual(arrays.get("a"), {
        dtype: "<f4",
        shape: [2, 3],
        data: Float32Array.from([0, 1, 2, 3, 4, 5]),
      });
      assert.deepEqual(arrays.get("x/y/b"), {
        dtype: "<f8",
        shape: [2, 1],
        data: Float32Array.from([1.5, -2]),
      });
      assert.deepEqual(arrays.get("c"), { dtype: "<f4", shape: [], data: Float32Array.from([7]) });
    });
  }
});
