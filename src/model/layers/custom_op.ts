/**
 * An op with its backward pass written out, for the layers whose tfjs autograd is slow or memory-hungry
 * (Linear, LayerNorm, GELU, the attention core).
 *
 * tfjs keeps every taped intermediate, every tensor saved for the backward pass and the gradient of every
 * taped output until the whole backward pass ends. One custom op is one tape node that saves only what
 * its backward needs, and its backward frees its saved tensors and its output's gradient as soon as it has
 * used them (tfjs never reads them again): activations are released block by block as the backward pass
 * walks down, as in PyTorch. This is what fits vit_tiny at batch 32 in the 4 GB wasm heap.
 */
import * as tf from "@tensorflow/tfjs";

export interface Forward {
  value: tf.Tensor;
  /** What `backward` receives as `saved`. */
  save: tf.Tensor[];
}

/**
 * `forward(...inputs)` computes the output; `backward(dy, saved)` returns one gradient per input, in
 * order; it runs inside a tidy. A gradient that is `dy`, one of `saved`, or returned twice is cloned
 * (a clone shares the data), so disposing `dy` and `saved` never frees a gradient still to be used.
 * `dy` is disposed: a caller seeding the backward pass through such an op passes a tensor it gives up.
 */
export function customOp(
  forward: (...inputs: tf.Tensor[]) => Forward,
  backward: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[],
): (...inputs: tf.Tensor[]) => tf.Tensor {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const { value, save: kept } = forward(...(args as tf.Tensor[]));
    save(kept);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const grads = tf.tidy(() =>
          backward(dy, saved).map((g, i, all) =>
            g === dy || saved.includes(g) || all.indexOf(g) !== i ? tf.clone(g) : g,
          ),
        );
        tf.dispose([dy, ...saved]);
        return grads;
      },
    };
  });
  return (...inputs) => op(...inputs);
}
