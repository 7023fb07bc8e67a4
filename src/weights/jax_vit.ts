/**
 * Google's original ViT checkpoints (.npz from google-research/vision_transformer and big_vision)
 * to timm names, exactly as timm's `_load_weights` (timm/models/vision_transformer.py) maps them:
 *
 *   embedding/kernel [P,P,C,D] (HWIO)             -> patch_embed.proj.weight [D,C,P,P]
 *   cls, Transformer/posembed_input/pos_embedding -> cls_token, pos_embed (as they are)
 *   Transformer/encoder_norm/{scale,bias}         -> norm.{weight,bias}
 *   head/kernel [D,K], pre_logits/kernel          -> head.weight [K,D], pre_logits.fc.weight (transposed)
 *   Transformer/encoderblock_{i}/
 *     LayerNorm_0, LayerNorm_2                    -> blocks.i.norm1, norm2
 *     MultiHeadDotProductAttention_1/{query,key,value}/kernel [D,H,hd]
 *                                                 -> rows of blocks.i.attn.qkv.weight: [H*hd, D] each, q|k|v
 *     MultiHeadDotProductAttention_1/out/kernel [H,hd,D] -> blocks.i.attn.proj.weight [D, H*hd]
 *     MlpBlock_3/Dense_{0,1}/kernel [in,out]      -> blocks.i.mlp.fc{1,2}.weight [out,in]
 *
 * Key prefixes `opt/target/`, `params/` and `params/img/` are stripped. big_vision files
 * (`params/`, a top-level `pos_embedding`, or blocks stacked along a leading axis under
 * `Transformer/encoderblock/`) number the sub-modules MultiHeadDotProductAttention_0, LayerNorm_1
 * and MlpBlock_0 instead. Arrays no rule consumes keep their names, so the loader reports them as
 * unexpected (e.g. a MAP head, which this framework does not have).
 */
import { DataError } from "../errors.js";
import type { StateDict, TensorData } from "../tensor.js";

const PREFIXES = ["", "opt/target/", "params/", "params/img/"];

export function jaxVitToTimm(arrays: ReadonlyMap<string, TensorData>, source: string): StateDict {
  const prefix = PREFIXES.find((p) => arrays.has(`${p}embedding/kernel`));
  if (prefix === undefined) {
    throw new DataError(
      `${source}: not a Google ViT .npz: no embedding/kernel array (keys: ${sample(arrays)})`,
    );
  }
  const stacked = arrays.has(`${prefix}Transformer/encoderblock/LayerNorm_0/scale`);
  const bigVision = prefix.startsWith("params/") || arrays.has(`${prefix}pos_embedding`) || stacked;
  const [mha, mlp, ln2] = bigVision ? [0, 0, 1] : [1, 3, 2];
  const used = new Set<string>();
  const get = (name: string, index?: number): TensorData => {
    const key = prefix + name;
    const t = arrays.get(key);
    if (!t)
      throw new DataError(`${source}: array "${key}" is missing (needed by timm's _load_weights layout)`);
    used.add(key);
    return index === undefined ? t : slice0(t, index);
  };
  const out: StateDict = new Map();
  const put = (name: string, key: string, transpose = true, index?: number) => {
    if (arrays.has(prefix + key)) out.set(name, n2p(get(key, index), transpose));
  };

  put("patch_embed.proj.weight", "embedding/kernel");
  put("patch_embed.proj.bias", "embedding/bias");
  put("cls_token", "cls", false);
  put("pos_embed", bigVision ? "pos_embedding" : "Transformer/posembed_input/pos_embedding", false);
  put("norm.weight", "Transformer/encoder_norm/scale");
  put("norm.bias", "Transformer/encoder_norm/bias");
  put("head.weight", "head/kernel");
  put("head.bias", "head/bias");
  put("pre_logits.fc.weight", "pre_logits/kernel");
  put("pre_logits.fc.bias", "pre_logits/bias");

  const depth = stacked
    ? get("Transformer/encoderblock/LayerNorm_0/scale").shape[0]
    : countBlocks(arrays, `${prefix}Transformer/encoderblock_`);
  for (let i = 0; i < depth; i++) {
    const block = stacked ? "Transformer/encoderblock/" : `Transformer/encoderblock_${i}/`;
    const index = stacked ? i : undefined;
    const attn = `${block}MultiHeadDotProductAttention_${mha}/`;
    const b = `blocks.${i}.`;
    put(`${b}norm1.weight`, `${block}LayerNorm_0/scale`, true, index);
    put(`${b}norm1.bias`, `${block}LayerNorm_0/bias`, true, index);
    // [D, H, hd] -> [D, H*hd] -> [H*hd, D], stacked q | k | v
    const qkv = ["query", "key", "value"].map((n) => {
      const k = get(`${attn}${n}/kernel`, index);
      return permute({ shape: [k.shape[0], k.data.length / k.shape[0]], data: k.data }, [1, 0]);
    });
    out.set(`${b}attn.qkv.weight`, concat0(qkv));
    if (arrays.has(`${prefix}${attn}query/bias`)) {
      const biases = ["query", "key", "value"].map((n) => get(`${attn}${n}/bias`, index));
      out.set(`${b}attn.qkv.bias`, concat0(biases.map((t) => ({ shape: [t.data.length], data: t.data }))));
    }
    // [H, hd, D] -> [D, H, hd] -> [D, H*hd]
    const proj = n2p(get(`${attn}out/kernel`, index), true);
    out.set(`${b}attn.proj.weight`, {
      shape: [proj.shape[0], proj.data.length / proj.shape[0]],
      data: proj.data,
    });
    put(`${b}attn.proj.bias`, `${attn}out/bias`, true, index);
    put(`${b}norm2.weight`, `${block}LayerNorm_${ln2}/scale`, true, index);
    put(`${b}norm2.bias`, `${block}LayerNorm_${ln2}/bias`, true, index);
    for (const r of [0, 1]) {
      put(`${b}mlp.fc${r + 1}.weight`, `${block}MlpBlock_${mlp}/Dense_${r}/kernel`, true, index);
      put(`${b}mlp.fc${r + 1}.bias`, `${block}MlpBlock_${mlp}/Dense_${r}/bias`, true, index);
    }
  }
  for (const [key, t] of arrays) if (!used.has(key)) out.set(key, t);
  return out;
}

/** timm's `_n2p`: a [1,1,1,N] array flattens; with `t`, HWIO -> OIHW, [a,b,c] -> [c,a,b], [a,b] -> [b,a]. */
function n2p(t: TensorData, transpose: boolean): TensorData {
  const s = t.shape;
  if (s.length === 4 && s[0] === 1 && s[1] === 1 && s[2] === 1) return { shape: [s[3]], data: t.data };
  if (!transpose || s.length < 2) return t;
  const perm = s.length === 4 ? [3, 2, 0, 1] : s.length === 3 ? [2, 0, 1] : [1, 0];
  return permute(t, perm);
}

/** A row-major N-d transpose: out axis k is input axis perm[k]. */
function permute(t: TensorData, perm: number[]): TensorData {
  const inShape = t.shape;
  const outShape = perm.map((p) => inShape[p]);
  const inStrides = inShape.map((_, i) => inShape.slice(i + 1).reduce((a, b) => a * b, 1));
  const strides = perm.map((p) => inStrides[p]);
  const out = new Float32Array(t.data.length);
  const idx = new Array(outShape.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let k = 0; k < idx.length; k++) src += idx[k] * strides[k];
    out[o] = t.data[src];
    for (let k = idx.length - 1; k >= 0 && ++idx[k] === outShape[k]; k--) idx[k] = 0;
  }
  return { shape: outShape, data: out };
}

/** Entry `i` of the leading (layer) axis of a stacked big_vision array. */
function slice0(t: TensorData, i: number): TensorData {
  const len = t.data.length / t.shape[0];
  return { shape: t.shape.slice(1), data: t.data.subarray(i * len, (i + 1) * len) };
}

function concat0(parts: TensorData[]): TensorData {
  const data = new Float32Array(parts.reduce((n, t) => n + t.data.length, 0));
  let at = 0;
  for (const t of parts) {
    data.set(t.data, at);
    at += t.data.length;
  }
  return { shape: [parts.reduce((n, t) => n + t.shape[0], 0), ...parts[0].shape.slice(1)], data };
}

function countBlocks(arrays: ReadonlyMap<string, TensorData>, blockPrefix: string): number {
  let depth = 0;
  for (const key of arrays.keys()) {
    if (!key.startsWith(blockPrefix)) continue;
    depth = Math.max(depth, Number.parseInt(key.slice(blockPrefix.length), 10) + 1);
  }
  return depth;
}

function sample(arrays: ReadonlyMap<string, unknown>): string {
  const keys = [...arrays.keys()];
  return keys.slice(0, 4).join(", ") + (keys.length > 4 ? ", ..." : "") || "(none)";
}
