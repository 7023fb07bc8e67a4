/**
 * `vit serve`: the API against `vit predict`, every limit hit on purpose, the batcher's rules,
 * and the command's signals, on a tiny random-weight checkpoint made here (tfjs cpu backend).
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { Batcher } from "../src/serve/batcher.js";
import { writePng } from "./data_fixtures.js";
import { type Running, startServer, writeTinyRun } from "./serve_fixtures.js";
import { runVit } from "./support.js";

const CLASSES = ["cat", "dog", "bird"];

let dir: string;
let run: string;
const file = (name: string) => path.join(dir, "in", name);
const bytes = (name: string) => fs.readFileSync(file(name));

before(async () => {
  await tf.setBackend("cpu");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "vit-serve-"));
  run = writeTinyRun(dir, CLASSES);
  await writePng(file("a.png"), 16, 16, 100);
  await writePng(file("wide.png"), 40, 24, 101); // resized and cropped by the eval transform
  await sharp(await writePng(file("tmp.png"), 30, 30, 102), { raw: { width: 30, height: 30, channels: 3 } })
    .jpeg()
    .toFile(file("c.jpg"));
  fs.writeFileSync(file("corrupt.png"), "not a png at all");
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

// biome-ignore lint/suspicious/noExplicitAny: assertions read the JSON the API answers
const json = async (r: Response | Promise<Response>): Promise<any> => (await r).json();

const raw = (url: string, body: Buffer, type = "image/png") =>
  fetch(url, { method: "POST", headers: { "content-type": type }, body });

function form(files: [string, Buffer][]): FormData {
  const f = new FormData();
  for (const [name, data] of files) f.append("image", new Blob([data]), name);
  return f;
}

async function waitFor(what: string, ok: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("vit serve: answers", () => {
  let s: Running;
  before(async () => {
    s = await startServer(run);
  });
  after(() => s.close());

  test("POST /predict answers exactly what `vit predict --json` prints for the same images", async () => {
    const names = ["a.png", "wide.png", "c.jpg"];
    const cli = await runVit(
      ["predict", ...names.map(file), "--run", run, "--json", "--topk", "3", "--backend", "cpu"],
      { cwd: dir },
    );
    assert.equal(cli.code, 0, cli.stderr);
    const expected = JSON.parse(cli.stdout) as { image: string; predictions: unknown[] }[];
    // One image per request, sent at once so they share batches.
    const single = await Promise.all(
      names.map(async (n) => {
        const r = await raw(
          `${s.url}/predict?topk=3`,
          bytes(n),
          n.endsWith(".jpg") ? "image/jpeg" : "image/png",
        );
        assert.equal(r.status, 200);
        return (await json(r))[0];
      }),
    );
    const multi = await json(
      fetch(`${s.url}/predict?topk=3`, { method: "POST", body: form(names.map((n) => [n, bytes(n)])) }),
    );
    for (const [i, n] of names.entries()) {
      assert.deepEqual(single[i], { image: "body", predictions: expected[i].predictions }, n);
      assert.deepEqual(multi[i], { image: n, predictions: expected[i].predictions }, n);
    }
  });

  test("topk defaults to --topk and is capped at the class count", async () => {
    assert.equal((await json(raw(`${s.url}/predict`, bytes("a.png"))))[0].predictions.length, 3);
    const r = await raw(`${s.url}/predict?topk=1`, bytes("a.png"));
    assert.equal((await json(r))[0].predictions.length, 1);
  });

  test("GET /model and /healthz", async () => {
    const m = await json(fetch(`${s.url}/model`));
    assert.deepEqual(m.classes, CLASSES);
    assert.equal(m.num_classes, 3);
    assert.equal(m.img_size, 16);
    assert.equal(m.engine, "cpu");
    assert.equal(m.config.model.embed_dim, 32);
    assert.ok(m.params > 0);
    assert.deepEqual(await json(fetch(`${s.url}/healthz`)), {
      status: "ok",
      in_flight: 0,
      queued: 0,
    });
  });

  test("POST /attention: one PNG, the image under its rollout map", async () => {
    const r = await raw(`${s.url}/attention`, bytes("wide.png"));
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "image/png");
    const meta = await sharp(Buffer.from(await r.arrayBuffer())).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ["png", 448, 448]);
  });

  test("GET / is the page; no request names a file on disk", async () => {
    const page = await fetch(`${s.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);
    assert.match(await page.text(), /<title>vit serve<\/title>/);
    for (const p of [
      "/page.html",
      "/..%2f..%2fpackage.json",
      "/%2e%2e/%2e%2e/etc/passwd",
      "/src/serve/page.html",
    ]) {
      assert.equal((await fetch(`${s.url}${p}`)).status, 404, p);
    }
  });

  test("one JSON log line per request: time, route, images, status, ms", async () => {
    s.logs.length = 0;
    await fetch(`${s.url}/predict`, {
      method: "POST",
      body: form([
        ["a.png", bytes("a.png")],
        ["c.jpg", bytes("c.jpg")],
      ]),
    });
    await fetch(`${s.url}/healthz`);
    await waitFor("two log lines", async () => s.logs.length === 2);
    const [p, h] = s.logs;
    assert.deepEqual(
      { method: p.method, route: p.route, status: p.status, images: p.images },
      { method: "POST", route: "/predict", status: 200, images: 2 },
    );
    assert.equal(h.route, "/healthz");
    assert.ok(!Number.isNaN(Date.parse(p.time as string)) && typeof p.ms === "number");
  });

  test("no CORS headers unless --cors", async () => {
    const r = await fetch(`${s.url}/model`, { headers: { origin: "https://example.com" } });
    assert.equal(r.headers.get("access-control-allow-origin"), null);
  });
});

describe("vit serve: bad input and limits", () => {
  let s: Running;
  before(async () => {
    s = await startServer(run, {
      maxImageBytes: 4000,
      maxImages: 3,
      maxPixels: 500,
      cors: "https://app.example",
    });
  });
  after(() => s.close());

  test("a raw body that is not an image: 422 naming it", async () => {
    const r = await raw(`${s.url}/predict`, bytes("corrupt.png"));
    assert.equal(r.status, 422);
    assert.match((await json(r)).error, /^body: /);
    assert.equal((await raw(`${s.url}/attention`, Buffer.alloc(0))).status, 422);
  });

  test("an image over the pixel limit: 422 naming the limit", async () => {
    const r = await raw(`${s.url}/predict`, bytes("wide.png")); // 40x24 = 960 pixels
    assert.equal(r.status, 422);
    assert.equal((await json(r)).error, "body: 40x24 is over the 500-pixel limit");
  });

  test("a body over the byte limit: 413", async () => {
    const r = await raw(`${s.url}/predict`, Buffer.alloc(8000, 1));
    assert.equal(r.status, 413);
    assert.match((await json(r)).error, /4000-byte limit/);
  });

  test("multipart: bad and over-limit images get their own error entry, the others answers, 200", async () => {
    const r = await fetch(`${s.url}/predict`, {
      method: "POST",
      body: form([
        ["a.png", bytes("a.png")],
        ["corrupt.png", bytes("corrupt.png")],
        ["huge.png", Buffer.alloc(8000, 1)],
      ]),
    });
    assert.equal(r.status, 200);
    const [a, corrupt, huge] = await json(r);
    assert.equal(a.predictions.length, 3);
    assert.deepEqual(corrupt.predictions, []);
    assert.match(corrupt.error, /^corrupt\.png: /);
    assert.equal(huge.error, "huge.png: over the 4000-byte limit (--max-image-bytes)");
  });

  test("more images than --max-images: 413; none: 400", async () => {
    const four = form(Array.from({ length: 4 }, (_, i) => [`${i}.png`, bytes("a.png")] as [string, Buffer]));
    const r = await fetch(`${s.url}/predict`, { method: "POST", body: four });
    assert.equal(r.status, 413);
    assert.equal((await json(r)).error, "more than 3 images in one request (--max-images)");
    const none = new FormData();
    none.append("note", "hello");
    assert.equal((await fetch(`${s.url}/predict`, { method: "POST", body: none })).status, 400);
  });

  test("wrong content type: 415; bad topk: 400", async () => {
    assert.equal((await raw(`${s.url}/predict`, Buffer.from("{}"), "application/json")).status, 415);
    assert.equal((await raw(`${s.url}/predict?topk=0`, bytes("a.png"))).status, 400);
    assert.equal((await raw(`${s.url}/predict?file=/etc/passwd`, bytes("a.png"))).status, 400);
  });

  test("--cors ORIGIN: that origin is allowed", async () => {
    const r = await fetch(`${s.url}/model`, { headers: { origin: "https://app.example" } });
    assert.equal(r.headers.get("access-control-allow-origin"), "https://app.example");
  });

  test("after all that: still answering, nothing in flight, no tensor left behind", async () => {
    // The first /attention loads the tfjs copy of the model it reads maps from; after it, nothing may grow.
    await raw(`${s.url}/attention`, bytes("a.png"));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      await raw(`${s.url}/predict`, bytes("a.png"));
      await raw(`${s.url}/predict`, bytes("corrupt.png"));
      await raw(`${s.url}/attention`, bytes("a.png"));
    }
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(await json(fetch(`${s.url}/healthz`)), {
      status: "ok",
      in_flight: 0,
      queued: 0,
    });
  });
});

describe("vit serve: queue and time limits", () => {
  test("a full queue: 503 with Retry-After; the queued request is still answered", async () => {
    const s = await startServer(run, { maxBatch: 2, batchWindowMs: 1000, maxQueue: 2 });
    try {
      const first = raw(`${s.url}/predict`, bytes("a.png"));
      await waitFor("one image queued", async () => (await json(fetch(`${s.url}/healthz`))).queued === 1);
      const two = form([
        ["a.png", bytes("a.png")],
        ["c.jpg", bytes("c.jpg")],
      ]);
      const r = await fetch(`${s.url}/predict`, { method: "POST", body: two });
      assert.equal(r.status, 503);
      assert.match(r.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
      assert.equal((await json(r)).error, "busy: 1 images in flight (--max-queue 2)");
      const three = form(["a.png", "c.jpg", "wide.png"].map((n) => [n, bytes(n)] as [string, Buffer]));
      const never = await fetch(`${s.url}/predict`, { method: "POST", body: three });
      assert.equal(never.status, 413);
      assert.equal((await json(never)).error, "3 images is more than --max-queue 2");
      assert.equal((await first).status, 200);
    } finally {
      await s.close();
    }
  });

  test("a request not answered in time: 504, and it leaves the queue", async () => {
    const s = await startServer(run, { maxBatch: 8, batchWindowMs: 2000, timeoutMs: 100 });
    try {
      const r = await raw(`${s.url}/predict`, bytes("a.png"));
      assert.equal(r.status, 504);
      assert.equal((await json(r)).error, "not answered within 100 ms (--timeout-ms)");
      assert.deepEqual(await json(fetch(`${s.url}/healthz`)), {
        status: "ok",
        in_flight: 0,
        queued: 0,
      });
    } finally {
      await s.close();
    }
  });
});

describe("batcher", () => {
  test("jobs within the window share a batch, at most maxBatch, one kind per batch", async () => {
    const b = new Batcher({ maxBatch: 4, windowMs: 20, maxQueue: 100 });
    const runs: string[][] = [];
    const lane = (kind: string) =>
      b.lane<string, string>(kind, async (xs) => {
        runs.push(xs);
        return xs.map((x) => x.toUpperCase());
      });
    const p = lane("p");
    const q = lane("q");
    const out = await Promise.all([p("a"), p("b"), q("x"), p("c"), p("d"), p("e")]);
    assert.deepEqual(out, ["A", "B", "X", "C", "D", "E"]);
    assert.deepEqual(runs, [["a", "b", "c", "d"], ["x"], ["e"]]);
  });

  test("images admitted and still decoding stretch the window (up to 4 windows) to join the batch", async () => {
    const b = new Batcher({ maxBatch: 8, windowMs: 30, maxQueue: 100 });
    const runs: number[][] = [];
    const p = b.lane<number, number>("p", async (xs) => {
      runs.push(xs);
      return xs;
    });
    assert.ok(b.admit(3));
    const first = p(1);
    // Past the window, but two admitted images are not queued yet: the batch waits for them.
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(runs, []);
    await Promise.all([first, p(2), p(3)]);
    assert.deepEqual(runs, [[1, 2, 3]]);
    b.release(3);
    // An admitted image that never comes holds the batch 4 windows at most.
    assert.ok(b.admit(2));
    const start = performance.now();
    await p(4);
    assert.ok(performance.now() - start >= 4 * 30 - 1);
    assert.deepEqual(runs, [[1, 2, 3], [4]]);
  });

  test("after a lone image the next starts at once; after a shared batch the window applies again", async () => {
    const windowMs = 200;
    const b = new Batcher({ maxBatch: 4, windowMs, maxQueue: 100 });
    const runs: number[][] = [];
    const p = b.lane<number, number>("p", async (xs) => {
      runs.push(xs);
      return xs;
    });
    const waited = async (x: number) => {
      const start = performance.now();
      await p(x);
      return performance.now() - start;
    };
    // A server that has run nothing yet waits the window for company.
    assert.ok((await waited(1)) >= windowMs - 1);
    assert.ok((await waited(2)) < windowMs / 2, "a lone client's next image waits for nobody");
    // Two images admitted together share a batch: the first waits for the second's decoding.
    assert.ok(b.admit(2));
    const first = p(3);
    await new Promise((r) => setTimeout(r, 20));
    await Promise.all([first, p(4)]);
    b.release(2);
    assert.ok((await waited(5)) >= windowMs - 1, "after a shared batch, a lone image waits the window");
    assert.deepEqual(runs, [[1], [2], [3, 4], [5]]);
  });

  test("a failing batch rejects its jobs only; an aborted job leaves the queue", async () => {
    const b = new Batcher({ maxBatch: 2, windowMs: 10, maxQueue: 100 });
    const p = b.lane<number, number>("p", async (xs) => {
      if (xs.includes(0)) throw new Error("boom");
      return xs;
    });
    const ac = new AbortController();
    const results = Promise.allSettled([p(0), p(1), p(2, ac.signal), p(3)]);
    ac.abort(new Error("gone"));
    const [a, b1, c, d] = await results;
    assert.equal(a.status, "rejected");
    assert.equal(b1.status, "rejected");
    assert.equal(c.status === "rejected" && (c.reason as Error).message, "gone");
    assert.deepEqual(d, { status: "fulfilled", value: 3 });
  });

  test("admission: at most maxQueue images; refused after drain", () => {
    const b = new Batcher({ maxBatch: 2, windowMs: 10, maxQueue: 3 });
    assert.ok(b.admit(2));
    assert.ok(!b.admit(2));
    assert.ok(b.admit(1));
    b.release(3);
    assert.equal(b.inFlight, 0);
    b.drain();
    assert.ok(!b.admit(1));
  });
});

describe("vit serve (child process): options and signals", () => {
  test("bad options: exit 2 with one line naming the flag", async () => {
    const queue = await runVit(["serve", "--run", run, "--max-queue", "4", "--max-batch", "8"], { cwd: dir });
    assert.equal(queue.code, 2);
    assert.equal(queue.stderr, "vit serve: --max-queue is less than --max-batch: a batch could never fill\n");
    const port = await runVit(["serve", "--run", run, "--port", "70000"], { cwd: dir });
    assert.equal(port.code, 2);
    assert.match(port.stderr, /--port.*expected a port number 0\.\.65535, got "70000"/);
  });

  for (const [signal, code] of [
    ["SIGTERM", 0],
    ["SIGINT", 130],
  ] as const) {
    test(`${signal} answers the request in flight, then exits ${code}`, async () => {
      let started: (s: { url: string; child: ChildProcess }) => void;
      const listening = new Promise<{ url: string; child: ChildProcess }>((r) => {
        started = r;
      });
      const args = ["serve", "--run", run, "--port", "0", "--backend", "cpu", "--batch-window-ms", "1500"];
      const done = runVit(args, {
        cwd: dir,
        onStderr: (text, child) => {
          const m = /listening on (http:\/\/\S+)\//.exec(text);
          if (m) started({ url: m[1], child });
        },
      });
      const { url, child } = await Promise.race([
        listening,
        done.then((r) => assert.fail(`vit serve exited ${r.code}: ${r.stderr}`)),
      ]);
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, "loopback by default");
      const pending = raw(`${url}/predict`, bytes("a.png"));
      await waitFor("the image queued", async () => (await json(fetch(`${url}/healthz`))).queued === 1);
      child.kill(signal);
      const r = await pending;
      assert.equal(r.status, 200);
      assert.equal((await json(r))[0].predictions.length, 3);
      const { code: exit, stdout, stderr } = await done;
      assert.equal(exit, code, stderr);
      // stdout holds only the request log: one JSON line per request.
      const lines = stdout.trim().split("\n");
      assert.ok(lines.length >= 2);
      for (const line of lines) assert.ok(["/healthz", "/predict"].includes(JSON.parse(line).route), line);
      assert.match(stderr, new RegExp(`${signal}: answering the 1 images in flight`));
    });
  }
});
