/**
 * PyTorch's own checkpoint formats, told apart by their first bytes, so a `.pt` / `.pth` / `.bin`
 * renamed `.safetensors` (or `.npz`) gets a sentence saying what it is and what to do. Both are
 * Python pickles, and loading a pickle can run arbitrary code: vit never unpickles.
 */
import * as fs from "node:fs";
import { DataError } from "../errors.js";

const ADVICE =
  "convert it to safetensors first (timm's clean_checkpoint.py --safetensors, or " +
  "safetensors.torch.save_file(torch.load(f, weights_only=True), out) in Python); " +
  "vit never unpickles, for safety";

/** What a PyTorch file is, from its first bytes; null for anything else. */
export function torchFileKind(head: Uint8Array): string | null {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  // torch.save since 1.6: a zip whose first member is "<name>/data.pkl" (np.savez holds .npy members).
  if (b.length >= 30 && b.readUInt32LE(0) === 0x04034b50) {
    const name = b.toString("latin1", 30, Math.min(b.length, 30 + b.readUInt16LE(26)));
    return /(^|\/)data\.pkl$/.test(name) ? "a PyTorch checkpoint (a torch.save zip of pickles)" : null;
  }
  // The pickle protocol opcode (0x80) and a protocol 2-5: torch.save's legacy format, or any pickle.
  if (b.length >= 2 && b[0] === 0x80 && b[1] >= 2 && b[1] <= 5) {
    return "a Python pickle (PyTorch's legacy torch.save format)";
  }
  return null;
}

/** Throws a DataError naming `file` when it is a PyTorch checkpoint rather than `expected`. */
export function refuseTorchFile(fd: number, file: string, expected: string): void {
  const head = Buffer.alloc(30 + 512);
  const got = fs.readSync(fd, head, 0, head.length, 0);
  const kind = torchFileKind(head.subarray(0, got));
  if (kind) throw new DataError(`${file} is ${kind}, not ${expected}: ${ADVICE}`);
}
