/**
 * timm's PatchEmbed: a Conv2d with kernel = stride = patch_size, weight `[D, C, P, P]` as in
 * PyTorch. Computed as patchify (reshape, transpose) + matMul, the same sums as the strided
 * convolution: the wasm backend has no Conv2DBackpropFilter, so a conv could not be trained there.
 */
import * as tf from "@tensorflow/tfjs";
import { DataError } from "../../errors.js";
import { Layer } from "../module.js";
import { linear } from "./linear.js";

export class PatchEmbed extends Layer {
  readonly gridSize: [number, number];
  readonly numPatches: number;

  constructor(
    readonly imgSize: number,
    readonly patchSize: number,
    readonly inChans: number,
    readonly embedDim: number,
  ) {
    super();
    const grid = imgSize / patchSize;
    this.gridSize = [grid, grid];
    this.numPatches = grid * grid;
    const fanIn = inChans * patchSize * patchSize;
    this.addParam("proj.weight", [embedDim, inChans, patchSize, patchSize], "patch", fanIn);
    this.addParam("proj.bias", [embedDim], "patch", fanIn);
  }

  /** `[B, H, W, C]` (NHWC) -> `[B, gh * gw, D]`, patches row-major over the grid as timm's flatten(2). */
  forward(x: tf.Tensor): tf.Tensor {
    this.check(x.shape);
    const [b, height, width, c] = x.shape;
    const p = this.patchSize;
    const [gh, gw] = [height / p, width / p];
    const d = this.embedDim;
    // [B, H, W, C] = [B*gh, P, gw, P*C] -> [B*gh, gw, P, P*C]: each patch's (row, col, channel) contiguous.
    const patches = tf.reshape(tf.transpose(tf.reshape(x, [b * gh, p, gw, p * c]), [0, 2, 1, 3]), [
      b * gh * gw,
      p * p * c,
    ]);
    // The weight is put in the patches' (row, col, channel) order rather than the patches in the
    // weight's (channel, row, col) order: the weight is small, the images are not.
    const weight = tf.reshape(tf.transpose(this.param("proj.weight"), [0, 2, 3, 1]), [d, p * p * c]);
    const tokens = linear(
      patches as tf.Tensor2D,
      weight as tf.Tensor2D,
      this.param("proj.bias") as tf.Tensor1D,
    );
    return tf.reshape(tokens, [b, gh * gw, d]);
  }

  private check(shape: number[]): void {
    if (shape.length !== 4) {
      throw new DataError(`patchEmbed: expected an NHWC batch [B, H, W, C], got shape [${shape.join(", ")}]`);
    }
    const [, height, width, c] = shape;
    if (c !== this.inChans) {
      throw new DataError(`patchEmbed: input has ${c} channels but in_chans is ${this.inChans}`);
    }
    for (const [name, size] of [
      ["height", height],
      ["width", width],
    ] as const) {
      if (size % this.patchSize !== 0) {
        throw new DataError(
          `patchEmbed: input ${name} ${size} is not a multiple of patch_size ${this.patchSize}`,
        );
      }
    }
    if (height !== this.imgSize || width !== this.imgSize) {
      throw new DataError(
        `patchEmbed: input is ${height}x${width} but img_size is ${this.imgSize} ` +
          `(pos_embed covers a ${this.gridSize[0]}x${this.gridSize[1]} grid)`,
      );
    }
  }
}
