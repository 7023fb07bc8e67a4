// Replacements for tfjs-backend-wasm kernels that copy more than they need to: the slices (their cost
// grew with the input rather than the output), Identity / same-dtype Cast (which copied data every other
// backend shares), and Transpose / Sum / BatchMatMul where the stock kernels hit cache-set aliasing or
// per-item overhead. Registered once, for the single- and multi-threaded builds alike.
import * as tf from "@tensorflow/tfjs";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";

// tfjs-backend-wasm's Slice (and SplitV / Unpack, which call it) first copies the whole input out of the
// wasm heap, so unstacking [96, 197, 64] into 96 items copies 96 x 4.8 MB. These read the heap in place.
// The output is allocated before the views are taken: a malloc may grow (and so replace) the heap.
type WasmTensor = tf.TensorInfo;

function sliceInto(backend: BackendWasm, x: WasmTensor, begin: number[], size: number[]): WasmTensor {
  const out = backend.makeOutput(size, x.dtype);
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  const rank = x.shape.length;
  const strides = tf.util.computeStrides(x.shape);
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    const offset = tf.slice_util.computeFlatOffset(begin, strides);
    dst.set(src.subarray(offset, offset + dst.length));
    return out;
  }
  // Copy contiguous runs, walking the outer indices like an odometer. A run is the innermost axis and every
  // axis inside the slice's innermost partial one (axes taken whole are contiguous with the next).
  let inner = rank - 1;
  while (inner > 0 && size[inner] === x.shape[inner]) inner--;
  const run = size.slice(inner).reduce((a, b) => a * b, 1);
  const index = new Array<number>(inner).fill(0);
  for (let o = 0; o < dst.length; o += run) {
    let offset = begin[inner] * (strides[inner] ?? 1);
    for (let d = 0; d < inner; d++) offset += (begin[d] + index[d]) * strides[d];
    dst.set(src.subarray(offset, offset + run), o);
    for (let d = inner - 1; d >= 0 && ++index[d] === size[d]; d--) index[d] = 0;
  }
  return out;
}

// tfjs-backend-wasm sends a product to XNNPACK only when neither operand is transposed and there is no batch
// dimension; a batched product (attention's q k^T and probs v, per batch and head) runs a scalar loop at
// ~2 GFLOP/s. This runs one XNNPACK product per item (12-19 GFLOP/s at attention sizes), calling the same C
// function on each item in place: every item gets a temporary tensor id that points into its operand, so
// nothing is copied and no tfjs op runs per item (unstack + matMul + stack in tfjs ops cost 2-4x more).
interface WasmModule {
  tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  _BatchMatMul(...args: number[]): void;
  HEAP32: Int32Array;
}

function batchMatMulPerItem(backend: BackendWasm, a: WasmTensor, b: WasmTensor): WasmTensor {
  const wasm = backend.wasm as unknown as WasmModule;
  const ids = backend as unknown as { dataIdNextNumber: number };
  const [m, k] = a.shape.slice(-2);
  const n = b.shape[b.shape.length - 1];
  const batch = a.shape.slice(0, -2).reduce((x, y) => x * y, 1);
  const out = backend.makeOutput([...a.shape.slice(0, -2), m, n], "float32");
  // The items' shapes [1, m, k] and [1, k, n], as the C function reads them.
  const shapes = wasm._malloc(24) >>> 0; // an unsigned pointer: the heap may be over 2 GB
  wasm.HEAP32.set([1, m, k, 1, k, n], shapes / 4);
  const offsets = [a, b, out].map((t) => backend.getMemoryOffset(t.dataId));
  const sizes = [m * k, k * n, m * n];
  for (let i = 0; i < batch; i++) {
    const [ia, ib, io] = sizes.map((size, j) => {
      const id = ids.dataIdNextNumber++;
      wasm.tfjs.registerTensor(id, size, offsets[j] + i * size * 4);
      return id;
    });
    wasm._BatchMatMul(ia, shapes, 3, ib, shapes + 12, 3, 0, 0, io);
    // Unregisters the ids (and the XNNPACK operator cached for ib); the memory belongs to a, b and out.
    for (const id of [ia, ib, io]) wasm.tfjs.disposeData(id);
  }
  wasm._free(shapes);
  return out;
}

// tfjs-backend-wasm's 2-D Transpose, and its Sum over leading axes (which transposes first), write with a
// stride of one output row. When that row is a multiple of 128 floats long (a batch of 128 x 65 or 256 x 50
// tokens) the writes fall into a few cache sets and run 3-8x slower than for other sizes. For those sizes
// these read 8 (transpose) or 4 (sum) rows at a time and write in runs; for the others tfjs's own kernels
// stay faster. The sum adds in the same order, in float32, so its results are bit-identical.
// (So the loops below can take 8 and 4 rows at a time with no remainder.)
const aliased = (rowLength: number) => rowLength % 128 === 0;

function transpose2d(backend: BackendWasm, x: WasmTensor): WasmTensor {
  const [m, n] = x.shape;
  const out = backend.makeOutput([n, m], x.dtype);
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  for (let i = 0; i < m; i += 8) {
    const o = i * n;
    for (let j = 0; j < n; j++) {
      const d = j * m + i;
      for (let r = 0; r < 8; r++) dst[d + r] = src[o + r * n + j];
    }
  }
  return out;
}

function sumLeading(backend: BackendWasm, x: WasmTensor, reduced: number, keepDims: boolean): WasmTensor {
  const rows = x.shape.slice(0, reduced).reduce((a, b) => a * b, 1);
  const kept = x.shape.slice(reduced);
  const out = backend.makeOutput(
    keepDims ? [...x.shape.slice(0, reduced).fill(1), ...kept] : kept,
    "float32",
  );
  const src = backend.typedArrayFromHeap(x);
  const acc = backend.typedArrayFromHeap(out) as Float32Array;
  const n = acc.length;
  const f = Math.fround;
  acc.fill(0);
  for (let i = 0; i < rows; i += 4) {
    const o = i * n;
    for (let j = 0; j < n; j++) {
      acc[j] = f(f(f(f(acc[j] + src[o + j]) + src[o + n + j]) + src[o + 2 * n + j]) + src[o + 3 * n + j]);
    }
  }
  return out;
}

// tfjs-backend-wasm's Identity and Cast copy their input even when nothing changes. tfjs runs Identity
// (engine.clone) on every tensor it saves for the backward pass, so a training step held a second copy of
// every saved activation (vit_tiny at batch 32 ran out of the 4 GB wasm heap) and spent time copying it.
// Sharing the data is what the cpu backend's Identity does and what wasm's own Reshape does: tensors are
// immutable, the backend counts references to the data.
function shareData(backend: BackendWasm, x: WasmTensor): WasmTensor {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

export function registerKernels(): void {
  // Strings live outside the heap; the original kernels keep handling them (and the cases the replacements
  // do not cover), so their setup functions carry over.
  const original = (name: string) => tf.getKernel(name, "wasm").kernelFunc;
  const setup = (name: string) => tf.getKernel(name, "wasm").setupFunc;
  const [slice, splitV, unpack] = [original("Slice"), original("SplitV"), original("Unpack")];
  const [identity, cast, batchMatMul] = [original("Identity"), original("Cast"), original("BatchMatMul")];
  const [transpose, sum] = [original("Transpose"), original("Sum")];
  if ((slice as { replaced?: true }).replaced) return;

  const kernels: Record<string, tf.KernelFunc> = {
    BatchMatMul: (args) => {
      const { a, b } = args.inputs as { a: WasmTensor; b: WasmTensor };
      const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
      const batchDims = a.shape.slice(0, -2);
      const perItem =
        !transposeA &&
        !transposeB &&
        a.dtype === "float32" &&
        b.dtype === "float32" &&
        batchDims.reduce((x, y) => x * y, 1) > 1 &&
        b.shape.length === a.shape.length &&
        batchDims.every((d, i) => d === b.shape[i]);
      return perItem ? batchMatMulPerItem(args.backend as BackendWasm, a, b) : batchMatMul(args);
    },
    Transpose: (args) => {
      const x = args.inputs.x as WasmTensor;
      const { perm } = args.attrs as unknown as tf.TransposeAttrs;
      const plain = x.shape.length === 2 && perm[0] === 1 && (x.dtype === "float32" || x.dtype === "int32");
      return plain && aliased(x.shape[0]) ? transpose2d(args.backend as BackendWasm, x) : transpose(args);
    },
    Sum: (args) => {
      const x = args.inputs.x as WasmTensor;
      const { axis, keepDims } = args.attrs as unknown as tf.SumAttrs;
      const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
      // The reduced axes are the first ones (and not all of them): a sum over rows.
      const leading = axes.length < x.shape.length && axes.every((a, i) => a === i);
      const rows = x.shape.slice(0, axes.length).reduce((a, b) => a * b, 1);
      return x.dtype === "float32" && leading && aliased(rows)
        ? sumLeading(args.backend as BackendWasm, x, axes.length, keepDims)
        : sum(args);
    },
    Identity: (args) => {
      const x = args.inputs.x as WasmTensor;
      return x.dtype === "string" ? identity(args) : shareData(args.backend as BackendWasm, x);
    },
    Cast: (args) => {
      const x = args.inputs.x as WasmTensor;
      const { dtype } = args.attrs as unknown as tf.CastAttrs;
      return x.dtype === dtype && dtype !== "string" ? shareData(args.backend as BackendWasm, x) : cast(args);
    },
    Slice: (args) => {
      const x = args.inputs.x as WasmTensor;
      if (x.dtype === "string") return slice(args);
      const { begin, size } = args.attrs as unknown as tf.SliceAttrs;
      const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
      return sliceInto(args.backend as BackendWasm, x, b, s);
    },
    SplitV: (args) => {
      const x = args.inputs.x as WasmTensor;
      if (x.dtype === "string") return splitV(args);
      const { numOrSizeSplits, axis } = args.attrs as unknown as tf.SplitVAttrs;
      const a = tf.util.parseAxisParam(axis, x.shape)[0];
      const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, a);
      const begin = new Array<number>(x.shape.length).fill(0);
      return sizes.map((n) => {
        const size = x.shape.slice();
        size[a] = n;
        const part = sliceInto(args.backend as BackendWasm, x, begin.slice(), size);
        begin[a] += n;
        return part;
      });
    },
    Unpack: (args) => {
      const value = args.inputs.value as WasmTensor;
      if (value.dtype === "string") return unpack(args);
      const { axis } = args.attrs as unknown as tf.UnpackAttrs;
      const a = axis < 0 ? axis + value.shape.length : axis;
      const shape = value.shape.filter((_, d) => d !== a);
      const size = value.shape.slice();
      size[a] = 1;
      return Array.from({ length: value.shape[a] }, (_, i) => {
        const begin = new Array<number>(value.shape.length).fill(0);
        begin[a] = i;
        return { ...sliceInto(args.backend as BackendWasm, value, begin, size), shape };
      });
    },
  };
  for (const [kernelName, kernelFunc] of Object.entries(kernels)) {
    const setupFunc = setup(kernelName);
    tf.unregisterKernel(kernelName, "wasm");
    tf.registerKernel({
      kernelName,
      backendName: "wasm",
      setupFunc,
      kernelFunc: Object.assign(kernelFunc, { replaced: true }),
    });
  }
}
