/**
 * Property-based fuzzing of the parsers that read user files (issue 15, "Beyond the list"): the
 * safetensors header and data reader, the .npz reader, the YAML config loader with `extends` and
 * `--set`, and the CSV manifest. The property: a valid result, or a VitError of one line naming
 * the file; never another exception, never a hang. Each property runs a fixed number of inputs
 * from a fixed seed, so every machine tries the same ones; a property still running after
 * HANG_MS fails as a hang. Each prints how many inputs it tried.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import * as zlib from "node:zlib";
import fc from "fast-check";
import YAML from "yaml";
import { loadConfig } from "../src/config/index.js";
import { readCsvManifest } from "../src/data/csv_manifest.js";
import { ImageWalk } from "../src/data/image_files.js";
import { VitError } from "../src/errors.js";
import { readNpz } from "../src/io/npz.js";
import { readSafetensors } from "../src/io/safetensors.js";

const SEED = 20261206;
/** Per property: about two seconds on an idle 2-core machine (the config loader's is the slowest). */
const RUNS = 2000;
const HANG_MS = 60_000;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-fuzz-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The property every reader must keep: `read()` returns something `valid` accepts, or throws a one-line VitError naming `file`. */
function holds<T>(read: () => T, valid: (result: T) => void, file: string): void {
  let result: T;
  try {
    result = read();
  } catch (err) {
    if (!(err instanceof VitError)) throw new Error(`not a VitError: ${(err as Error)?.stack ?? err}`);
    const lines = err.message.split("\n");
    if (lines.length !== 1) throw new Error(`${lines.length} lines: ${JSON.stringify(err.message)}`);
    if (!err.message.includes(file)) throw new Error(`does not name ${file}: ${err.message}`);
    return;
  }
  valid(result);
}

/** Runs `property` on RUNS inputs from the fixed seed; fails with the counterexample, or on a hang. */
function fuzz<Ts extends [unknown, ...unknown[]]>(
  t: { diagnostic: (message: string) => void },
  name: string,
  arbitraries: { [K in keyof Ts]: fc.Arbitrary<Ts[K]> },
  property: (...args: Ts) => void,
): void {
  const details = fc.check(fc.property(...arbitraries, property), {
    seed: SEED,
    numRuns: RUNS,
    interruptAfterTimeLimit: HANG_MS,
    markInterruptAsFailure: true,
  });
  t.diagnostic(`${name}: ${details.numRuns} inputs (seed ${SEED})`);
  if (details.failed) {
    assert.fail(
      `${name}: ${details.errorInstance instanceof Error ? details.errorInstance.message : details.errorInstance}\n` +
        `counterexample: ${fc.stringify(details.counterexample)}`,
    );
  }
}

/** Flips `n` bytes at positions and values drawn from `picks`, then cuts the buffer at `cut` (if shorter). */
function mutate(bytes: Uint8Array, picks: [number, number][], cut: number | null): Uint8Array {
  const out = Uint8Array.from(bytes);
  for (const [at, value] of picks) if (out.length > 0) out[at % out.length] = value;
  return cut === null ? out : out.subarray(0, Math.min(out.length, cut));
}
const mutations = fc.tuple(
  fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }),
  fc.option(fc.nat(400), { freq: 3 }),
);

const validShape = (shape: number[], length: number) =>
  shape.every((d) => Number.isSafeInteger(d) && d >= 0) && shape.reduce((a, b) => a * b, 1) === length;

// ---- safetensors ------------------------------------------------------------------------------

const dtypes = fc.constantFrom("F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "Q4", "");
const dims = fc.oneof(fc.nat(5), fc.constantFrom(-1, 1.5, 2 ** 53, Number.NaN));
const tensorEntry = fc.record(
  {
    dtype: fc.oneof(dtypes, fc.jsonValue()),
    shape: fc.oneof(fc.array(dims, { maxLength: 3 }), fc.jsonValue()),
    data_offsets: fc.oneof(fc.tuple(fc.nat(80), fc.nat(80)), fc.jsonValue()),
  },
  { requiredKeys: [] },
);
const header = fc.dictionary(
  fc.oneof(fc.string({ maxLength: 6 }), fc.constant("__metadata__")),
  fc.oneof({ weight: 4, arbitrary: tensorEntry }, fc.dictionary(fc.string(), fc.string()), fc.jsonValue()),
  { maxKeys: 4 },
);

function safetensorsBytes(h: unknown, lengthDelta: number, data: Uint8Array): Uint8Array {
  const json = Buffer.from(JSON.stringify(h) ?? "null");
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Math.max(0, json.length + lengthDelta)));
  return Buffer.concat([head, json, data]);
}

// ---- npz --------------------------------------------------------------------------------------

function npy(descr: string, fortran: boolean, shape: string, data: Uint8Array): Uint8Array {
  let dict = `{'descr': '${descr}', 'fortran_order': ${fortran ? "True" : "False"}, 'shape': (${shape}), }`;
  dict += `${" ".repeat(63 - ((10 + dict.length) % 64))}\n`;
  const head = Buffer.alloc(10);
  head.write("\x93NUMPY", 0, "latin1");
  head[6] = 1;
  head.writeUInt16LE(dict.length, 8);
  return Buffer.concat([head, Buffer.from(dict, "latin1"), data]);
}

/** A zip of `members`, stored or deflated, as np.savez / np.savez_compressed write it (CRCs left 0: the reader does not check them). */
function zip(members: { name: string; data: Uint8Array; deflate: boolean }[]): Uint8Array {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const m of members) {
    const name = Buffer.from(m.name);
    const body = m.deflate ? zlib.deflateRawSync(m.data) : Buffer.from(m.data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(m.deflate ? 8 : 0, 8);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(m.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(m.deflate ? 8 : 0, 10);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(m.data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, body);
    centrals.push(central, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

const npyMember = fc.record({
  name: fc.oneof(
    fc.constantFrom("w.npy", "Transformer/encoder_norm/scale.npy", "x.txt"),
    fc.string({ maxLength: 8 }),
  ),
  descr: fc.constantFrom("<f4", "<f8", ">f4", "<i4", "|u1", "<f2", "<f"),
  fortran: fc.boolean(),
  shape: fc.oneof(
    fc.array(fc.nat(4), { maxLength: 3 }).map((s) => (s.length === 1 ? `${s[0]},` : s.join(", "))),
    fc.constantFrom("-1,", "1e9, 1e9", "a", "2,, 3", ""),
  ),
  data: fc.uint8Array({ maxLength: 96 }),
  deflate: fc.boolean(),
});

// ---- config -----------------------------------------------------------------------------------

const configKeys = fc.constantFrom(
  "name",
  "extends",
  "model",
  "model.depth",
  "model.preset",
  "model.img_size",
  "model.__proto__",
  "data.mean",
  "data.aug.rand_augment",
  "train.epochs",
  "train.optimizer.lr",
  "train.ema",
  "runtime.backend",
  "constructor",
  "__proto__",
  "bogus.key",
);
const yamlValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(
    "vit_tiny_patch16_224",
    "wasm",
    "null",
    "[0.5, 0.5]",
    "{decay: 0.9}",
    "~",
    "&a [1]",
    "*a",
    "!!binary aGk=",
    "1e400",
    ".nan",
  ),
);

function nest(key: string, value: unknown): Record<string, unknown> {
  return key
    .split(".")
    .reverse()
    .reduce<unknown>((v, k) => Object.defineProperty({}, k, { value: v, enumerable: true }), value) as Record<
    string,
    unknown
  >;
}

const configText = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .array(fc.tuple(configKeys, yamlValue), { maxLength: 5 })
      .map((pairs) => pairs.map(([k, v]) => YAML.stringify(nest(k, v))).join("")),
  },
  fc
    .array(
      fc.constantFrom(
        "model:",
        " depth: 3",
        "\n",
        "  ",
        "- ",
        ": ",
        "{",
        "}",
        "[",
        "]",
        "&x ",
        "*x",
        "<<: *x",
        "extends: parent.yaml",
        "\t",
        "'",
        '"',
        "#",
      ),
      { maxLength: 24 },
    )
    .map((a) => a.join("")),
  fc.string({ maxLength: 60 }),
);

// ---- CSV --------------------------------------------------------------------------------------

const csvField = fc.constantFrom(
  "path",
  "label",
  "a.png",
  "b.png",
  "sub/../a.png",
  "missing.png",
  "cat",
  "dog",
  "",
  " ",
  '"a.png"',
  '"c,a"',
  '"x\ny"',
  '"q""',
  "\uFEFF",
  "/abs.png",
);
const csvText = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .array(fc.array(csvField, { minLength: 1, maxLength: 3 }), { maxLength: 6 })
      .chain((rows) =>
        fc
          .constantFrom("\n", "\r\n", "\r")
          .map((eol) => ["path,label", ...rows.map((r) => r.join(","))].join(eol)),
      ),
  },
  fc.string({ maxLength: 80 }),
);

describe("fuzzing the readers of user files", () => {
  test("safetensors: header and data", { timeout: 30_000 }, (t) => {
    const file = path.join(dir, "f.safetensors");
    fuzz(
      t,
      "safetensors",
      [header, fc.integer({ min: -4, max: 4 }), fc.uint8Array({ maxLength: 80 }), mutations],
      (h, delta, data, [picks, cut]) => {
        fs.writeFileSync(file, mutate(safetensorsBytes(h, delta, data), picks, cut));
        holds(
          () => readSafetensors(file),
          ({ tensors }) => {
            for (const [name, tensor] of tensors)
              assert.ok(validShape(tensor.shape, tensor.data.length), name);
          },
          file,
        );
      },
    );
  });

  test("npz: zip directory, entries and .npy headers", { timeout: 30_000 }, (t) => {
    const file = path.join(dir, "f.npz");
    fuzz(t, "npz", [fc.array(npyMember, { maxLength: 3 }), mutations], (members, [picks, cut]) => {
      const bytes = zip(
        members.map((m) => ({
          name: m.name,
          deflate: m.deflate,
          data: npy(m.descr, m.fortran, m.shape, m.data),
        })),
      );
      fs.writeFileSync(file, mutate(bytes, picks, cut));
      holds(
        () => readNpz(file),
        (arrays) => {
          for (const [name, a] of arrays) assert.ok(validShape(a.shape, a.data.length), name);
        },
        file,
      );
    });
  });

  test("config: YAML with extends and --set", { timeout: 30_000 }, (t) => {
    const child = path.join(dir, "child.yaml");
    const parent = path.join(dir, "parent.yaml");
    const sets = fc.array(
      fc.oneof(
        fc
          .tuple(configKeys, yamlValue)
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`),
        fc.string({ maxLength: 12 }),
      ),
      { maxLength: 3 },
    );
    fuzz(t, "config", [configText, fc.boolean(), configText, sets], (own, extend, inherited, set) => {
      fs.writeFileSync(child, extend ? `extends: parent.yaml\n${own}` : own);
      fs.writeFileSync(parent, inherited);
      let message = "";
      try {
        loadConfig(child, { set });
      } catch (err) {
        if (!(err instanceof VitError)) throw new Error(`not a VitError: ${(err as Error)?.stack ?? err}`);
        message = err.message;
      }
      // A config error lists every problem, one per line, each naming the file or --set at fault.
      for (const line of message ? message.split("\n") : []) {
        assert.match(line, /^(\/|--set |[^\s:]+\.yaml)/, message);
      }
    });
  });

  test("CSV manifest", { timeout: 30_000 }, (t) => {
    const file = path.join(dir, "m.csv");
    fs.writeFileSync(path.join(dir, "a.png"), "");
    fs.writeFileSync(path.join(dir, "b.png"), "");
    fuzz(t, "csv", [csvText], (text) => {
      fs.writeFileSync(file, text);
      holds(
        // Rows naming one file twice are skipped with a warning: kept quiet here.
        () => readCsvManifest(file, { walk: new ImageWalk(() => {}) }),
        (ds) => {
          assert.ok(ds.samples.length > 0);
          for (const s of ds.samples) {
            assert.ok(fs.existsSync(s.path), s.path);
            assert.ok(Number.isInteger(s.label) && s.label >= 0 && s.label < ds.classes.length);
          }
        },
        file,
      );
    });
  });
});
