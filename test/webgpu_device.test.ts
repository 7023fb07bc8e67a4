/**
 * runtime.device: which device auto takes for which WebGPU adapter (a fake query stands in for
 * Dawn, so these run on any machine), Dawn asked for real, and the placement of nodes read from a
 * profile.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type AdapterInfo,
  type AdapterQuery,
  chooseDevice,
  dawnQuery,
} from "../src/engines/onnxruntime/device.js";
import { describePlacement, placementOf } from "../src/engines/onnxruntime/placement.js";
import { ROOT, runVit, webgpuSkip } from "./support.js";

/** Dawn finding `info` (null: no adapter; a string: why it could not be asked). */
const dawn =
  (info: AdapterInfo | null | string): AdapterQuery =>
  async () =>
    info;

const LLVMPIPE: AdapterInfo = {
  description: "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)",
  vendor: "mesa",
  isFallbackAdapter: true,
};
const RTX: AdapterInfo = {
  description: "NVIDIA GeForce RTX 4090",
  vendor: "nvidia",
  isFallbackAdapter: false,
};

test("auto takes webgpu on a hardware adapter", async () => {
  const choice = await chooseDevice("auto", dawn(RTX));
  assert.equal(choice.device, "webgpu");
  assert.equal(choice.adapter?.software, false);
  assert.equal(choice.adapter?.description, "NVIDIA GeForce RTX 4090");
});

test("auto passes over a software adapter and says so; asked by name, webgpu takes it", async () => {
  const auto = await chooseDevice("auto", dawn(LLVMPIPE));
  assert.equal(auto.device, "cpu");
  assert.equal(auto.adapter?.software, true);
  assert.match(auto.note ?? "", /software.*--device webgpu/);
  const named = await chooseDevice("webgpu", dawn(LLVMPIPE));
  assert.equal(named.device, "webgpu");
  assert.equal(named.adapter?.software, true);
});

test("a software adapter is known by its name where Dawn leaves isFallbackAdapter unset", async () => {
  for (const description of ["SwiftShader Device (Subzero)", "Microsoft Basic Render Driver", "lavapipe"]) {
    const choice = await chooseDevice("auto", dawn({ description }));
    assert.equal(choice.device, "cpu", description);
    assert.equal(choice.adapter?.software, true, description);
  }
});

test("no adapter, or no webgpu package: auto is cpu with the reason; webgpu by name still goes to onnxruntime", async () => {
  const none = await chooseDevice("auto", dawn(null));
  assert.equal(none.device, "cpu");
  assert.match(none.note ?? "", /no WebGPU adapter/);
  const why = "webgpu not installed (npm install webgpu), so the adapter is not known";
  const missing = await chooseDevice("auto", dawn(why));
  assert.deepEqual(missing, { device: "cpu", adapter: null, note: `webgpu passed over: ${why}` });
  const named = await chooseDevice("webgpu", dawn(why));
  assert.deepEqual([named.device, named.adapter], ["webgpu", null]);
});

test("Dawn, asked in a child process, answers with an adapter or says why not", async () => {
  const found = await dawnQuery();
  if (typeof found === "string") assert.match(found, /webgpu|adapter/);
  else if (found !== null) assert.equal(typeof found.description, "string");
});

test("cpu and cuda never ask for an adapter", async () => {
  const never: AdapterQuery = async () => assert.fail("Dawn was asked");
  assert.deepEqual(await chooseDevice("cpu", never), { device: "cpu", adapter: null });
  assert.deepEqual(await chooseDevice("cuda", never), { device: "cuda", adapter: null });
});

test("placement counts the device's nodes, the CPU's by op, and the copies between them", () => {
  const node = (op: string, provider: string, name = `${op}_kernel_time`) => ({
    cat: "Node",
    name,
    args: { op_name: op, provider },
  });
  const p = placementOf([
    node("MatMul", "WebGpuExecutionProvider"),
    node("Gemm", "WebGpuExecutionProvider"),
    node("MatMul", "WebGpuExecutionProvider", "MatMul_fence_before"),
    node("FusedMatMul", "CPUExecutionProvider"),
    node("FusedMatMul", "CPUExecutionProvider"),
    node("Sum", "CPUExecutionProvider"),
    node("MemcpyToHost", "WebGpuExecutionProvider"),
    node("MemcpyFromHost", "WebGpuExecutionProvider"),
    { cat: "Session", name: "model_run" },
  ]);
  assert.equal(p.onDevice, 2);
  assert.deepEqual(
    [...p.onCpu],
    [
      ["FusedMatMul", 2],
      ["Sum", 1],
    ],
  );
  assert.equal(p.copies, 2);
  assert.equal(
    describePlacement(p),
    "2 nodes on the device; on the CPU: FusedMatMul x2, Sum x1; 2 copies between them",
  );
  assert.equal(
    describePlacement(placementOf([node("Add", "WebGpuExecutionProvider")])),
    "all 1 nodes on the device",
  );
});

test("vit info --device webgpu --verbose names the adapter and what runs on the CPU", {
  skip: await webgpuSkip(),
}, async () => {
  const r = await runVit(["info", "--device", "webgpu", "--verbose"], { cwd: ROOT });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^onnxruntime .*device webgpu, chosen by --device webgpu$/m);
  assert.match(r.stdout, /^adapter {5}.+, (hardware|software)/m);
  assert.match(r.stdout, /^placement {3}vit_micro_patch8_32 inference: (all )?\d+ nodes on the device/m);
  assert.match(r.stdout, /^ {12}vit_micro_patch8_32 training: (all )?\d+ nodes on the device/m);
});
