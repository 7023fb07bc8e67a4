/**
 * timm <-> Hugging Face state-dict names. The HF dicts here are built from the parity fixtures by
 * the renaming transformers' convert_{vit,deit}_timm_to_pytorch.py applies, written out by hand
 * (independently of src/weights/keymaps.ts), then converted back and compared bit for bit.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { DataError } from "../src/errors.js";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import type { StateDict, TensorData } from "../src/tensor.js";
import {
  detectNaming,
  parseHfConfig,
  readHfConfig,
  timmToHf,
  toHfConfig,
  toTimmNames,
} from "../src/weights/keymaps.js";
import { type HfKind, toHfByHand } from "./helpers.js";
import { FIXTURES } from "./support.js";

const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, "manifest.json"), "utf8")) as {
  cases: { name: string; json: string }[];
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vit-keymaps-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface CaseSpec {
  distilled: boolean;
  timm_kwargs: { class_token: boolean; embed_dim: number };
  derived: { use_fc_norm: boolean };
  files: { state_dict: string };
}

function loadCase(c: { json: string }): { spec: CaseSpec; sd: StateDict } {
  const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, c.json), "utf8"));
  const { tensors } = readSafetensors(path.join(FIXTURES, spec.files.state_dict));
  return { spec, sd: new Map([...tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data }])) };
}

function assertSameTensors(
  got: ReadonlyMap<string, TensorData>,
  want: ReadonlyMap<string, TensorData>,
): void {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [k, t] of want) {
    const g = got.get(k)!;
    assert.deepEqual(g.shape, t.shape, k);
    assert.deepEqual(
      new Uint32Array(g.data.buffer, g.data.byteOffset, g.data.length),
      new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length),
      k,
    );
  }
}

function without(sd: StateDict, ...drop: string[]): StateDict {
  return new Map([...sd].filter(([k]) => !drop.some((d) => k.startsWith(d))));
}

describe("HF -> timm on the parity fixtures", () => {
  for (const c of manifest.cases) {
    const { spec, sd } = loadCase(c);
    if (!spec.timm_kwargs.class_token || spec.derived.use_fc_norm) {
      test(`${c.name}: no HF ViT class holds this model, so export is a named error`, () => {
        assert.throws(
          () => timmToHf(sd, c.name),
          (e: unknown) => e instanceof DataError && /cannot use Hugging Face names/.test(e.message),
        );
      });
      continue;
    }
    const kind: HfKind = spec.distilled ? "DeiTWithTeacher" : "ViTForImageClassification";

    test(`${c.name}: ${kind} names convert back bit-for-bit, also through an F32 safetensors file`, () => {
      const hf = toHfByHand(sd, kind);
      assert.deepEqual(detectNaming(hf.keys(), "x"), {
        naming: "hf",
        prefix: spec.distilled ? "deit." : "vit.",
      });
      const back = toTimmNames(hf, "hf.safetensors");
      assert.equal(back.naming.naming, "hf");
      assert.deepEqual(back.notes, []);
      assertSameTensors(back.stateDict, sd);
      const file = path.join(tmp, `${c.name}.hf.safetensors`);
      writeSafetensors(file, hf);
      assertSameTensors(toTimmNames(readSafetensors(file).tensors, file).stateDict, sd);
    });

    test(`${c.name}: timmToHf produces exactly the documented HF names and tensors`, () => {
      const { stateDict, architecture } = timmToHf(sd, c.name);
      assert.equal(
        architecture,
        spec.distilled ? "DeiTForImageClassificationWithTeacher" : "ViTForImageClassification",
      );
      assertSameTensors(stateDict, toHfByHand(sd, kind));
    });

    test(`${c.name}: a bare ${spec.distilled ? "DeiTModel" : "ViTModel"} (no prefix, pooler) loads without heads`, () => {
      const bare = toHfByHand(sd, "ViTModel");
      const D = spec.timm_kwargs.embed_dim;
      bare.set("pooler.dense.weight", { shape: [D, D], data: new Float32Array(D * D) });
      bare.set("pooler.dense.bias", { shape: [D], data: new Float32Array(D) });
      assert.deepEqual(detectNaming(bare.keys(), "x"), { naming: "hf", prefix: "" });
      const back = toTimmNames(bare, "model.safetensors");
      assertSameTensors(back.stateDict, without(sd, "head"));
      assert.equal(back.notes.length, 2);
      assert.match(back.notes[0], /dropped pooler\.dense\.weight: the Hugging Face pooler/);
      assert.equal(
        timmToHf(without(sd, "head"), c.name).architecture,
        spec.distilled ? "DeiTModel" : "ViTModel",
      );
    });

    if (spec.distilled) {
      test(`${c.name}: DeiTForImageClassification (one classifier) maps to head, keeps dist_token`, () => {
        const back = toTimmNames(toHfByHand(sd, "DeiTForImageClassification"), "x").stateDict;
        assertSameTensors(back, without(sd, "head_dist"));
      });
    }
  }
});

describe("naming detection and errors", () => {
  // Any fixture HF ViTForImageClassification can hold (class token, no fc_norm, not distilled).
  const { spec, sd } = manifest.cases
    .map(loadCase)
    .find(({ spec }) => spec.timm_kwargs.class_token && !spec.derived.use_fc_norm && !spec.distilled)!;
  const D = spec.timm_kwargs.embed_dim;

  test("timm names are detected and passed through unchanged", () => {
    assert.deepEqual(detectNaming(sd.keys(), "x"), { naming: "timm", prefix: "" });
    const out = toTimmNames(sd, "x");
    assert.equal(out.naming.naming, "timm");
    assertSameTensors(out.stateDict, sd);
  });

  test("a ResNet state dict is a clear error naming the file", () => {
    const keys = [
      "conv1.weight",
      "bn1.weight",
      "bn1.running_mean",
      "layer1.0.conv1.weight",
      "fc.weight",
      "fc.bias",
    ];
    assert.throws(
      () => detectNaming(keys, "resnet50.safetensors"),
      (e: unknown) =>
        e instanceof DataError &&
        /^resnet50\.safetensors: not a ViT\/DeiT state dict: .*its keys: conv1\.weight, bn1\.weight, bn1\.running_mean, layer1\.0\.conv1\.weight, \.\.\.$/.test(
          e.message,
        ),
    );
  });

  test("a timm Swin (patch_embed but no pos_embed or blocks.N) is not taken for a ViT", () => {
    assert.throws(
      () =>
        detectNaming(
          ["patch_embed.proj.weight", "layers.0.blocks.0.attn.qkv.weight", "head.fc.weight"],
          "swin",
        ),
      /swin: not a ViT\/DeiT state dict/,
    );
  });

  test("HF keys under two prefixes are an error", () => {
    assert.throws(
      () =>
        detectNaming(["vit.embeddings.cls_token", "deit.encoder.layer.0.layernorm_before.weight"], "mixed"),
      /mixed: Hugging Face keys with different prefixes \("vit\.", "deit\."\)/,
    );
  });

  test("a missing value projection names the HF key", () => {
    const hf = toHfByHand(sd, "ViTForImageClassification");
    hf.delete("vit.encoder.layer.0.attention.attention.value.weight");
    assert.throws(
      () => toTimmNames(hf, "hf.safetensors"),
      /hf\.safetensors: vit\.encoder\.layer\.0\.attention\.attention\.value\.weight missing \(needed for blocks\.0\.attn\.qkv\.weight\)/,
    );
  });

  test("q, k, v of different shapes are an error", () => {
    const hf = toHfByHand(sd, "ViTForImageClassification");
    hf.set("vit.encoder.layer.0.attention.attention.key.bias", { shape: [5], data: new Float32Array(5) });
    assert.throws(
      () => toTimmNames(hf, "hf"),
      new RegExp(`attention\\.key\\.bias has shape \\[5\\] but .*query\\.bias has \\[${D}\\]`),
    );
  });

  test("HF keys with no timm counterpart pass through for the loader to report", () => {
    const hf = toHfByHand(sd, "ViTForImageClassification");
    hf.set("vit.embeddings.mask_token", { shape: [1, 1, D], data: new Float32Array(D) });
    const out = toTimmNames(hf, "hf").stateDict;
    assert.ok(out.has("vit.embeddings.mask_token"));
  });

  test("timm keys HF cannot express are named on export", () => {
    const withPreLogits = new Map(sd).set("pre_logits.fc.weight", {
      shape: [D, D],
      data: new Float32Array(D * D),
    });
    assert.throws(
      () => timmToHf(withPreLogits, "ckpt"),
      /ckpt: cannot use Hugging Face names: "pre_logits\.fc\.weight" has no counterpart in ViTForImageClassification/,
    );
  });
});

describe("Hugging Face config.json", () => {
  const vitBase = {
    architectures: ["ViTForImageClassification"],
    attention_probs_dropout_prob: 0.0,
    hidden_act: "gelu",
    hidden_dropout_prob: 0.0,
    hidden_size: 768,
    id2label: { "0": "tench, Tinca tinca", "1": "goldfish, Carassius auratus", "2": "great white shark" },
    image_size: 224,
    initializer_range: 0.02,
    intermediate_size: 3072,
    layer_norm_eps: 1e-12,
    model_type: "vit",
    num_attention_heads: 12,
    num_channels: 3,
    num_hidden_layers: 12,
    patch_size: 16,
    qkv_bias: true,
    transformers_version: "4.13.0.dev0",
  };

  test("a ViTForImageClassification config gives the model shape and class names", () => {
    const file = path.join(tmp, "config.json");
    fs.writeFileSync(file, JSON.stringify(vitBase));
    const info = readHfConfig(file);
    assert.deepEqual(info.model, {
      img_size: 224,
      patch_size: 16,
      in_chans: 3,
      embed_dim: 768,
      depth: 12,
      num_heads: 12,
      mlp_ratio: 4,
      qkv_bias: true,
      num_classes: 3,
    });
    assert.deepEqual(info.classNames, [
      "tench, Tinca tinca",
      "goldfish, Carassius auratus",
      "great white shark",
    ]);
    assert.equal(info.architecture, "ViTForImageClassification");
    assert.equal(info.layerNormEps, 1e-12);
  });

  test("a DeiT config is distilled; ViTModel placeholders give no class names or class count", () => {
    const deit = parseHfConfig(
      { ...vitBase, model_type: "deit", architectures: ["DeiTForImageClassificationWithTeacher"] },
      "c",
    );
    assert.equal(deit.model.distilled, true);
    const bare = parseHfConfig(
      { ...vitBase, architectures: ["ViTModel"], id2label: { "0": "LABEL_0", "1": "LABEL_1" } },
      "c",
    );
    assert.equal(bare.classNames, null);
    assert.equal(bare.model.num_classes, undefined);
  });

  test("toHfConfig round-trips through parseHfConfig", () => {
    const model = {
      img_size: 32,
      patch_size: 8,
      in_chans: 1 as const,
      embed_dim: 48,
      depth: 2,
      num_heads: 3,
      mlp_ratio: 4,
      qkv_bias: false,
    };
    const json = toHfConfig(model, "ViTForImageClassification", ["a", "b"]);
    const info = parseHfConfig(JSON.parse(JSON.stringify(json)), "c");
    assert.deepEqual(info.model, { ...model, num_classes: 2 });
    assert.deepEqual(info.classNames, ["a", "b"]);
    assert.equal(info.layerNormEps, 1e-6);
  });

  test("bad configs are named errors", () => {
    assert.throws(
      () => parseHfConfig({ ...vitBase, hidden_size: "big" }, "cfg.json"),
      /^DataError: cfg\.json: hidden_size: /,
    );
    assert.throws(
      () => parseHfConfig({ ...vitBase, hidden_act: "gelu_new" }, "cfg.json"),
      /hidden_act "gelu_new" is not supported/,
    );
    assert.throws(
      () => parseHfConfig({ ...vitBase, image_size: [224, 160] }, "cfg.json"),
      /image_size \[224,160\] is not square/,
    );
    assert.throws(
      () => parseHfConfig({ ...vitBase, model_type: "swin" }, "cfg.json"),
      /model_type "swin" is not a ViT or DeiT/,
    );
    assert.throws(
      () => parseHfConfig({ ...vitBase, id2label: { "0": "a", "2": "c" } }, "cfg.json"),
      /id2label has no entry for index 1/,
    );
    assert.throws(
      () => parseHfConfig({ ...vitBase, num_channels: 4 }, "cfg.json"),
      /cfg\.json: num_channels: /,
    );
    assert.throws(() => readHfConfig(path.join(tmp, "absent.json")), /cannot read .*absent\.json/);
  });
});
