/** Host-side tensors: how weights travel between files, engines and checkpoints. */

/** A tensor in PyTorch layout: row-major float32. */
export interface TensorData {
  shape: number[];
  data: Float32Array;
}

/** Named tensors, keyed by timm's parameter names unless a caller says otherwise. */
export type StateDict = Map<string, TensorData>;
