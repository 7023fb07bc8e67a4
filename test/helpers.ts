/**
 * Shared by the tests of Hugging Face names (keymaps, pretrained): the renaming transformers'
 * convert_{vit,deit}_timm_to_pytorch.py applies, written out by hand, independently of
 * src/weights/keymaps.ts, so the converter is checked against it rather than against itself.
 */
import type { StateDict } from "../src/tensor.js";

export type HfKind =
  | "ViTForImageClassification"
  | "ViTModel"
  | "DeiTForImageClassification"
  | "DeiTWithTeacher";

/** The documented renaming, timm -> HF, spelled out. */
export function toHfByHand(sd: StateDict, kind: HfKind): StateDict {
  const prefix = {
    ViTForImageClassification: "vit.",
    ViTModel: "",
    DeiTForImageClassification: "deit.",
    DeiTWithTeacher: "deit.",
  }[kind];
  const top: Record<string, string> = {
    cls_token: "embeddings.cls_token",
    dist_token: "embeddings.distillation_token",
    pos_embed: "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
  };
  const heads: Record<string, string> =
    kind === "DeiTWithTeacher"
      ? { head: "cls_classifier", head_dist: "distillation_classifier" }
      : kind === "ViTModel"
        ? {}
        : { head: "classifier" };
  const layer: Record<string, string> = {
    norm1: "layernorm_before",
    "attn.proj": "attention.output.dense",
    norm2: "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
  };
  const out: StateDict = new Map();
  for (const [key, t] of sd) {
    const block = /^blocks\.(\d+)\.(.+)\.(weight|bias)$/.exec(key);
    const [module, param] = [key.slice(0, key.lastIndexOf(".")), key.slice(key.lastIndexOf(".") + 1)];
    if (key in top) out.set(prefix + top[key], t);
    else if (block && block[2] === "attn.qkv") {
      const d = t.shape[0] / 3;
      const rowLen = t.data.length / t.shape[0];
      ["query", "key", "value"].forEach((p, j) => {
        out.set(`${prefix}encoder.layer.${block[1]}.attention.attention.${p}.${block[3]}`, {
          shape: [d, ...t.shape.slice(1)],
          data: t.data.slice(j * d * rowLen, (j + 1) * d * rowLen),
        });
      });
    } else if (block) out.set(`${prefix}encoder.layer.${block[1]}.${layer[block[2]]}.${block[3]}`, t);
    else if (module in heads) out.set(`${heads[module]}.${param}`, t);
    // anything else (head_dist for DeiTForImageClassification, head for ViTModel) is not in that HF class
  }
  return out;
}
