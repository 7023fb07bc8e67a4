/** timm's Mlp: fc1 -> GELU -> dropout -> fc2 -> dropout. */
import * as tf from "@tensorflow/tfjs";
import { type ForwardContext, Layer } from "../module.js";
import { dropout } from "./dropout.js";
import { Linear } from "./linear.js";

/** torch.nn.GELU(): the exact form 0.5 x (1 + erf(x / sqrt 2)), not the tanh approximation. */
export class Gelu extends Layer {
  forward(x: tf.Tensor): tf.Tensor {
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
  }
}

export class Mlp extends Layer {
  private readonly fc1: Linear;
  private readonly act: Gelu;
  private readonly drop1: Layer;
  private readonly fc2: Linear;
  private readonly drop2: Layer;

  constructor(dim: number, hidden: number, drop: number) {
    super();
    this.fc1 = this.addModule("fc1", new Linear(dim, hidden));
    this.act = this.addModule("act", new Gelu());
    this.drop1 = this.addModule("drop1", dropout(drop));
    this.fc2 = this.addModule("fc2", new Linear(hidden, dim));
    this.drop2 = this.addModule("drop2", dropout(drop));
  }

  forward(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const h = this.drop1.call(this.act.call(this.fc1.call(x, ctx), ctx), ctx);
    return this.drop2.call(this.fc2.call(h, ctx), ctx);
  }
}
