/**
 * Test-only preload (NODE_OPTIONS=--import): the disk fills up mid-run. After
 * VIT_ENOSPC_AFTER temp files of checkpoints/last.safetensors were opened, every write into a
 * later one fails with ENOSPC, as a full disk would.
 */
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";

const allowed = Number(process.env.VIT_ENOSPC_AFTER ?? 0);
const failing = new Set();
let opened = 0;
const { openSync, writeSync } = fs;

fs.openSync = (file, ...rest) => {
  const fd = openSync(file, ...rest);
  if (/checkpoints[\\/]\.last\.safetensors\..*\.tmp$/.test(String(file)) && ++opened > allowed)
    failing.add(fd);
  return fd;
};
fs.writeSync = (fd, ...rest) => {
  if (failing.has(fd)) {
    throw Object.assign(new Error("ENOSPC: no space left on device, write"), {
      code: "ENOSPC",
      errno: -28,
      syscall: "write",
    });
  }
  return writeSync(fd, ...rest);
};
// The ESM `import * as fs` namespaces see the patched functions only after this.
syncBuiltinESMExports();
