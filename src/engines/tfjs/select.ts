/**
 * Picks the tfjs backend (docs/design.md "Engines and backends"). `auto` tries, in order, @tensorflow/tfjs-node-gpu
 * (CUDA), @tensorflow/tfjs-node (both register the backend "tensorflow"), wasm, cpu. The native
 * packages are optional and loaded by dynamic import, so nothing breaks when they are absent.
 * wasm starts through src/engines/tfjs/wasm_threads.ts, on `threads` threads (config runtime.threads).
 */
import os from "node:os";
import * as tf from "@tensorflow/tfjs";
import type { TfjsBackendName } from "../../config/schema.js";
import { UsageError, VitError } from "../../errors.js";

/** The native packages, fastest first. Both need libtensorflow 2.9.1, which they download at install. */
export const NATIVE_PACKAGES = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"] as const;
export const WASM_PACKAGE = "@tensorflow/tfjs-backend-wasm";
/** What @tensorflow/tfjs-node-gpu 4.x needs on the machine (its libtensorflow is 2.9.1). */
export const TENSORFLOW_REQUIREMENTS = "libtensorflow 2.9.1: CUDA 11.2, cuDNN 8.1";

export interface BackendChoice {
  /** The tfjs backend now active. */
  name: "tensorflow" | "wasm" | "cpu";
  /** The package that provided it, for tensorflow and wasm. */
  package?: string;
  /** Backends tried before it, with why each was passed over, in the order tried. */
  skipped: { name: string; reason: string }[];
  /** wasm: the threads its products run on. */
  threads?: number;
  /** wasm: why it runs on fewer threads than asked, when its multi-threaded build failed to start. */
  note?: string;
}

/** How packages are loaded; tests pass a fake to make a backend look missing. */
export type Importer = (specifier: string) => Promise<unknown>;

export const defaultImporter: Importer = (specifier) => import(specifier);

/**
 * Selects `name` (or the first that works, for auto) and reports the choice; prints nothing.
 * Asking for tensorflow or wasm when it cannot start is a UsageError naming what to install.
 * `native` narrows the native packages auto tries (the engine choice, src/engines/select.ts,
 * tries tfjs-node-gpu itself before onnxruntime).
 */
export async function initBackend(
  name: TfjsBackendName,
  opts: { importer?: Importer; threads?: number | null; native?: readonly string[] } = {},
): Promise<BackendChoice> {
  silenceTfjs();
  const importer = opts.importer ?? defaultImporter;
  const skipped: BackendChoice["skipped"] = [];
  if (name === "auto" || name === "tensorflow") {
    for (const pkg of name === "auto" ? (opts.native ?? NATIVE_PACKAGES) : NATIVE_PACKAGES) {
      const reason = await tryTensorflow(pkg, importer);
      if (reason === undefined) return { name: "tensorflow", package: pkg, skipped };
      skipped.push({ name: "tensorflow", reason });
    }
    if (name === "tensorflow") {
      throw new UsageError(
        `backend tensorflow is not available (${skipped.map((s) => s.reason).join("; ")}): ` +
          `run \`npm install ${NATIVE_PACKAGES[0]}\` (CUDA; needs ${TENSORFLOW_REQUIREMENTS}) ` +
          `or \`npm install ${NATIVE_PACKAGES[1]}\` (CPU)`,
      );
    }
  }
  if (name === "auto" || name === "wasm") {
    const started = await tryWasm(importer, opts.threads ?? defaultThreads());
    if (typeof started !== "string") return { name: "wasm", package: WASM_PACKAGE, skipped, ...started };
    if (name === "wasm") throw new UsageError(`backend wasm is not available: ${started}`);
    skipped.push({ name: "wasm", reason: started });
  }
  if (!(await tf.setBackend("cpu"))) throw new VitError("backend cpu failed to start");
  return { name: "cpu", skipped };
}

/** undefined when `pkg` is imported, else why not. */
export async function importPackage(pkg: string, importer: Importer): Promise<string | undefined> {
  try {
    await importer(pkg);
    return undefined;
  } catch (err) {
    return isMissing(err, pkg) ? `${pkg} not installed` : `${pkg} failed to load: ${firstLine(err)}`;
  }
}

/** undefined when `pkg` (a native package) is imported and the tensorflow backend is now active, else why not. */
export async function tryTensorflow(pkg: string, importer: Importer): Promise<string | undefined> {
  const missing = await importPackage(pkg, importer);
  if (missing !== undefined) return missing;
  try {
    if (await tf.setBackend("tensorflow")) return undefined;
    return `${pkg} loaded but the tensorflow backend failed to start`;
  } catch (err) {
    return `${pkg} loaded but the tensorflow backend failed to start: ${firstLine(err)}`;
  }
}

/** runtime.threads null: one thread per core. */
export function defaultThreads(): number {
  return os.availableParallelism();
}

/** `BackendChoice` with its thread count for the summary: "wasm (2 threads)". */
export function describeBackend(choice: { name: string; threads?: number }): string {
  const threads =
    choice.threads === undefined ? "" : ` (${choice.threads} thread${choice.threads > 1 ? "s" : ""})`;
  return `${choice.name}${threads}`;
}

/**
 * Starts wasm on `threads` threads, or on one with a note when the multi-threaded build fails
 * (it is tfjs's, loaded in a way tfjs does not support in Node: see wasm_threads.ts).
 * A string is why wasm cannot start at all.
 */
async function tryWasm(
  importer: Importer,
  threads: number,
): Promise<Pick<BackendChoice, "threads" | "note"> | string> {
  const missing = await importPackage(WASM_PACKAGE, importer);
  if (missing !== undefined) return missing;
  // Imported only now: it imports the wasm package itself.
  const { initWasm } = await import("./wasm_threads.js");
  let note: string | undefined;
  if (threads > 1) {
    try {
      return { threads: await initWasm({ threads }) };
    } catch (err) {
      note = `the multi-threaded wasm build failed to start (${firstLine(err)}); running on 1 thread`;
    }
  }
  try {
    return { threads: await initWasm({ threads: 1 }), ...(note ? { note } : {}) };
  } catch (err) {
    return `${WASM_PACKAGE} loaded but the wasm backend failed to start: ${firstLine(err)}`;
  }
}

/** The package itself is absent, as opposed to present but broken (e.g. a missing libcudart). */
function isMissing(err: unknown, pkg: string): boolean {
  const e = err as { code?: string; message?: string };
  return (
    (e.code === "ERR_MODULE_NOT_FOUND" || e.code === "MODULE_NOT_FOUND") &&
    (e.message ?? "").includes(`'${pkg}'`)
  );
}

export function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split("\n")[0];
}

/**
 * tfjs prints a banner to stderr on first use of the cpu backend in Node ("Hi, looks like you are
 * running TensorFlow.js in Node.js ...") and warnings when a native package re-registers the
 * platform; PROD mode turns tfjs's console warnings off (it has no other effect in tfjs 4.22).
 */
export function silenceTfjs(): void {
  tf.env().set("PROD", true);
}
