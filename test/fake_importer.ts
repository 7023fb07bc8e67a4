/** A stand-in for the engine choice's package importer, so tests can make packages absent or broken. */
import * as tf from "@tensorflow/tfjs";
import { ORT_PACKAGE } from "../src/engines/onnxruntime/runtime.js";
import { type Importer, WASM_PACKAGE } from "../src/engines/tfjs/select.js";

/** Node's error for a package that is not installed. */
export function notFound(pkg: string): Error {
  return Object.assign(new Error(`Cannot find package '${pkg}' imported from /x/src/engines/select.ts`), {
    code: "ERR_MODULE_NOT_FOUND",
  });
}

/** What a native binding throws when its shared library is missing. */
function loadError(pkg: string): Error {
  return pkg === ORT_PACKAGE
    ? new Error("libonnxruntime.so.1: cannot open shared object file: No such file\n    at ...")
    : new Error("libcudart.so.11.0: cannot open shared object file\nat ...");
}

/**
 * `missing` packages are absent, `broken` ones throw on load, a present native tfjs package
 * registers a "tensorflow" backend (a cpu instance under that name); wasm and onnxruntime-node
 * are the real ones. `calls` lists the packages asked for, in order.
 */
export function fakeImporter(opts: {
  missing?: string[];
  broken?: string[];
}): Importer & { calls: string[] } {
  const calls: string[] = [];
  const importer = async (pkg: string) => {
    calls.push(pkg);
    if (opts.missing?.includes(pkg)) throw notFound(pkg);
    if (opts.broken?.includes(pkg)) throw loadError(pkg);
    if (pkg === WASM_PACKAGE || pkg === ORT_PACKAGE) return import(pkg);
    tf.registerBackend("tensorflow", () => tf.findBackendFactory("cpu")!() as tf.KernelBackend);
  };
  return Object.assign(importer, { calls });
}
