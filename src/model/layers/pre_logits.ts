/** The representation layer of the original ViT (`representation_size`): Linear + tanh before the head. */
import * as tf from "@tensorflow/tfjs";
import { type ForwardContext, Layer } from "../module.js";
import { Linear } from "./linear.js";

export class PreLogits extends Layer {
  private readonly fc: Linear;

  constructor(dim: number, size: number) {
    super();
    this.fc = this.addModule("fc", new Linear(dim, size));
  }

  forward(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return tf.tanh(this.fc.call(x, ctx));
  }
}
