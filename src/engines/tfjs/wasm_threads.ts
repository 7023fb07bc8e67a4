// Starts tfjs's wasm backend in Node, on one thread or on its multi-threaded SIMD build, with the kernel
// replacements of wasm_kernels.ts.
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
import { registerKernels } from "./wasm_kernels.js";

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
