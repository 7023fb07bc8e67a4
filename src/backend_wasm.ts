// Starts tfjs's wasm backend in Node, on one thread or on its multi-threaded SIMD build, and replaces the
// kernels that copy more than they need to: the slices (their cost grew with the input rather than the
// output) and Identity / same-dtype Cast (which copied data every other backend shares).
//
// tfjs-backend-wasm never enables threads in Node (flag WASM_HAS_MULTITHREAD_SUPPORT is false there), and
// its own loader could not run them anyway: it hands emscripten's pthread workers blob: URLs and a Blob of
// the factory's source, which node:worker_threads cannot start. The emscripten output it ships
// (wasm-out/tfjs-backend-wasm-threaded-simd.js) does support Node, so for threads > 1 we instantiate it
// ourselves: the pthread worker runs from a data: URL that evaluates the worker source tfjs ships, and
// loads the factory from its real file path. The module is wrapped in tfjs's own BackendWasm and
// registered under the name "wasm", so every wasm kernel applies unchanged.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { Worker as NodeWorker } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs";
import { BackendWasm, getThreadsCount, setThreadsCount } from "@tensorflow/tfjs-backend-wasm";

const require = createRequire(import.meta.url);
const WASM_OUT = "@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd";
// Same priority tfjs-backend-wasm registers with, so `auto` ordering is unchanged.
const WASM_PRIORITY = 2;

type Factory = () => tf.KernelBackend | Promise<tf.KernelBackend>;

// tfjs-backend-wasm's own (single-threaded SIMD) factory, registered when the package was imported.
const singleThreaded: Factory = tf.engine().registryFactory.wasm.factory;

export interface WasmOptions {
  /** XNNPACK threads; 1 is tfjs's own single-threaded build. */
  threads: number;
}

let activeThreads: number | undefined;

/**
 * Makes "wasm" the active backend with `threads` threads and returns the thread count XNNPACK uses.
 * Calling it again with another count replaces the wasm backend (its tensors are disposed); with the
 * same count it only re-selects it.
 */
export async function initWasm({ threads }: WasmOptions): Promise<number> {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`initWasm: threads ${threads} must be >= 1`);
  if (activeThreads === threads && tf.engine().registry.wasm) {
    await tf.setBackend("wasm");
    return getThreadsCount();
  }
  let failure: unknown;
  const factory: Factory =
    threads === 1
      ? singleThreaded
      : () =>
          threadedBackend(threads).catch((err: unknown) => {
            failure = err;
            throw err;
          });
  if (tf.engine().registryFactory.wasm) tf.removeBackend("wasm");
  tf.registerBackend("wasm", factory, WASM_PRIORITY);
  registerKernels();
  const added = newProcessListeners();
  const ok = await tf.setBackend("wasm");
  added.remove();
  if (!ok) {
    activeThreads = undefined;
    const reason = failure instanceof Error ? failure.message : String(failure ?? "see the warning above");
    throw new Error(`initWasm: the wasm backend with ${threads} threads failed to start: ${reason}`);
  }
  activeThreads = threads;
  return getThreadsCount();
}

// emscripten's Node glue adds process listeners that rethrow every uncaught exception and unhandled
// rejection, which turns any such crash into exit code 7; Node's own handling (exit code 1) is kept.
function newProcessListeners(): { remove(): void } {
  const emitter: NodeJS.EventEmitter = process;
  const events = ["uncaughtException", "unhandledRejection"];
  const before = events.map((e) => emitter.listeners(e));
  return {
    remove: () =>
      events.forEach((e, i) => {
        for (const l of emitter.listeners(e)) {
          if (!before[i].includes(l)) emitter.removeListener(e, l as (...a: unknown[]) => void);
        }
      }),
  };
}

// ---- The threaded build ---------------------------------------------------------------------------

interface EmscriptenModule {
  cwrap(name: string, ret: string | null, args: string[]): (...a: number[]) => number;
  PThread: { runningWorkers: NodeWorker[]; unusedWorkers: NodeWorker[]; terminateAllThreads(): void };
  tfjs?: unknown;
}

// The lib settings carry no WebAssembly typings; only this much of the API is used.
type Imports = { env: Record<string, unknown> };
type Receive = (instance: unknown, module: unknown) => void;
declare const WebAssembly: {
  instantiate(binary: Uint8Array, imports: Imports): Promise<{ instance: unknown; module: unknown }>;
};

// emscripten creates its pool of 8 workers with `new Worker(url)` through a global it assigns itself;
// holding that global lets them start without the parent's execArgv (a tsx loader in each worker costs
// ~0.4 s of start-up, and they only run plain JS).
class PthreadWorker extends NodeWorker {
  constructor(url: URL) {
    super(url, { execArgv: [] });
  }
}

// The worker source is a classic script written for a CommonJS worker file: it expects `require` and
// `__filename`, and the factory it loads must define a global, hence the indirect eval. tfjs stores it in
// a template literal, so its "\n" escapes arrived as raw newlines inside string literals; tfjs's own
// loader restores them the same way.
function workerUrl(): URL {
  const source = JSON.stringify(require.resolve(`${WASM_OUT}.worker.js`));
  const code = [
    `import { createRequire } from "node:module";`,
    `globalThis.require = createRequire(${source});`,
    `globalThis.__filename = ${source};`,
    `(0, eval)(globalThis.require(${source}).wasmWorkerContents.replace(/\\n/g, "\\\\n"));`,
  ].join("\n");
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}

function instantiate(threads: number): Promise<EmscriptenModule> {
  const factory = require(`${WASM_OUT}.js`) as (cfg: object) => Promise<EmscriptenModule>;
  const wasmFile = require.resolve(`${WASM_OUT}.wasm`);
  const url = workerUrl();
  Object.defineProperty(globalThis, "Worker", {
    configurable: true,
    get: () => PthreadWorker,
    set: () => {},
  });
  return new Promise((resolve, reject) => {
    factory({
      // emscripten passes this straight to `new Worker()`, which accepts a data: URL object.
      locateFile: (path: string, prefix: string) => (path.endsWith(".worker.js") ? url : prefix + path),
      // tfjs caps XNNPACK's pool at half the logical cores (it assumes hyper-threading), i.e. one thread
      // on a 2-core machine; reporting 2 * threads makes the cap exactly `threads`.
      instantiateWasm: (imports: Imports, receive: Receive) => {
        imports.env.emscripten_num_logical_cores = () => 2 * threads;
        readFile(wasmFile)
          .then((binary) => WebAssembly.instantiate(binary, imports))
          .then(({ instance, module }) => receive(instance, module), reject);
        return {};
      },
    }).then(resolve, reject);
  });
}

async function threadedBackend(threads: number): Promise<BackendWasm> {
  const wasm = await instantiate(threads);
  // The cwraps BackendWasm expects; mirrors tfjs-backend-wasm's init().
  wasm.tfjs = {
    init: wasm.cwrap("init", null, []),
    initWithThreadsCount: wasm.cwrap("init_with_threads_count", null, ["number"]),
    getThreadsCount: wasm.cwrap("get_threads_count", "number", []),
    registerTensor: wasm.cwrap("register_tensor", null, ["number", "number", "number"]),
    disposeData: wasm.cwrap("dispose_data", null, ["number"]),
    dispose: wasm.cwrap("dispose", null, []),
  };
  setThreadsCount(threads);
  // biome-ignore lint/suspicious/noExplicitAny: BackendWasm's constructor takes emscripten's module type.
  const backend = new BackendWasm(wasm as any);
  // XNNPACK's pool threads live forever and emscripten ref()s running workers, which would keep Node
  // from exiting; they hold no state worth waiting for. The pool's spare workers (~12 MB each) are never
  // used by tfjs; emscripten starts a new one should a thread ever be created later.
  for (const worker of wasm.PThread.runningWorkers) worker.unref();
  for (const worker of wasm.PThread.unusedWorkers) worker.terminate();
  wasm.PThread.unusedWorkers = [];
  const dispose = backend.dispose.bind(backend);
  backend.dispose = () => {
    dispose();
    wasm.PThread.terminateAllThreads();
  };
  return backend;
}

// ---- Kernels that copy less ------------------------------------------------------------------------------

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

function registerKernels(): void {
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
