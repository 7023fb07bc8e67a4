/**
 * `vit serve`: a loaded model behind HTTP (fastify). Routes:
 *   POST /predict    one image as the body (Content-Type image/*), or several as multipart form
 *                    data; `?topk=`. The answer is what `vit predict --json` prints for them.
 *   POST /attention  one image in, its attention-rollout overlay out (PNG).
 *   GET  /model      preset, config, classes, engine, parameter count.
 *   GET  /healthz    liveness and the work in flight.
 *   GET  /           the page (src/serve/page.html, no build step).
 * Images are decoded as `vit predict` decodes them and batched across requests (batcher.ts). No
 * route reads a path from the request: the page is the only file served. Each request gets one
 * JSON line on `log` (stdout in the CLI).
 */
import * as fs from "node:fs";
import cors from "@fastify/cors";
import multipart from "@fastify/multipart";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { explainImage } from "../attention/explain.js";
import { rolloutOverlayPng } from "../attention/figure.js";
import { BadImageError, type ImageInput, probeImage } from "../data/decode.js";
import { modelStats } from "../model/stats.js";
import { type PredictResult, topPredictions } from "../predict/format.js";
import { EvalTransform } from "../predict/pixels.js";
import { Batcher } from "./batcher.js";
import type { ServedModel } from "./model.js";
import type { ServeOptions } from "./options.js";

/** An answer other than 200, with the headers it needs (Retry-After). */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface ServerContext {
  model: ServedModel;
  /** The engine the forward passes run on, as `GET /model` reports it ("wasm (2 threads)"). */
  engine: string;
  options: ServeOptions;
  /** Where the request log lines go. */
  log: (line: string) => void;
}

export interface Server {
  app: FastifyInstance;
  batcher: Batcher;
  /** Stops taking requests, answers those in flight, then closes. */
  close(): Promise<void>;
}

const PAGE = new URL("./page.html", import.meta.url);
/** Text fields a form may carry beside its images (ignored; a browser form may add some). */
const FORM_FIELDS = 16;
/** The name a raw-body image answers under (a multipart file answers under its file name). */
const BODY = "body";

const errorSchema = { type: "object", properties: { error: { type: "string" } }, required: ["error"] };
const predictionsSchema = {
  type: "array",
  items: {
    type: "object",
    properties: {
      image: { type: "string" },
      predictions: {
        type: "array",
        items: {
          type: "object",
          properties: { label: { type: "string" }, index: { type: "integer" }, prob: { type: "number" } },
          required: ["label", "index", "prob"],
        },
      },
      error: { type: "string" },
    },
    required: ["image", "predictions"],
  },
};

declare module "fastify" {
  interface FastifyRequest {
    /** Images the request carried (for the log line). */
    images: number;
  }
}

export async function createServer(ctx: ServerContext): Promise<Server> {
  const { model: im, options: o } = ctx;
  const page = fs.readFileSync(PAGE, "utf8");
  const labels = im.classes ?? undefined;
  const { img_size: size, in_chans: inChans } = im.classifier.cfg;
  const transform = new EvalTransform(im.config.data, size, inChans);
  const batcher = new Batcher({ maxBatch: o.maxBatch, windowMs: o.batchWindowMs, maxQueue: o.maxQueue });

  // One batch runs at a time, so one input array serves every batch: no megabytes of fresh arrays
  // per batch for the collector on the thread that answers requests.
  const batch = new Float32Array(o.maxBatch * transform.stride);
  const logits = batcher.lane<Uint8Array, Float32Array>("predict", async (crops) => {
    for (const [i, rgb] of crops.entries()) transform.normalizeInto(batch, i * transform.stride, rgb);
    const values = (await im.classifier.predictLogits(batch, crops.length)).logits;
    const k = im.numClasses;
    return crops.map((_, i) => values.slice(i * k, (i + 1) * k));
  });
  const overlay = batcher.lane<ImageInput, Buffer>("attention", async (inputs) => {
    const out: Buffer[] = [];
    for (const img of inputs) {
      out.push(
        await rolloutOverlayPng(
          await explainImage(im.attentionModel(), im.config, img, im.classes),
          o.overlaySize,
        ),
      );
    }
    return out;
  });

  const app = Fastify({
    logger: false,
    bodyLimit: o.maxImageBytes,
    requestTimeout: o.timeoutMs,
    return503OnClosing: true,
    forceCloseConnections: "idle",
    // An unknown query parameter is an error, not silently dropped.
    ajv: { customOptions: { removeAdditional: false } },
  });
  app.decorateRequest("images", 0);
  if (o.cors) await app.register(cors, { origin: o.cors });
  await app.register(multipart, {
    throwFileSizeLimit: false,
    limits: {
      fileSize: o.maxImageBytes,
      files: o.maxImages,
      fields: FORM_FIELDS,
      parts: o.maxImages + FORM_FIELDS,
      fieldSize: 1024,
    },
  });
  app.addContentTypeParser(/^image\//, { parseAs: "buffer" }, (_req, body, done) => done(null, body));

  app.addHook("onResponse", async (req, reply) => {
    const line = {
      time: new Date().toISOString(),
      method: req.method,
      route: req.routeOptions.url ?? req.url.split("?")[0],
      status: reply.statusCode,
      images: req.images,
      ms: Math.round(reply.elapsedTime * 10) / 10,
    };
    ctx.log(`${JSON.stringify(line)}\n`);
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (err instanceof HttpError) {
      return reply.code(err.statusCode).headers(err.headers).send({ error: err.message });
    }
    const status = err.statusCode ?? 500;
    if (status >= 500) process.stderr.write(`error: ${err.stack ?? err.message}\n`);
    return reply.code(status).send({ error: status >= 500 ? "internal error" : limitMessage(err, o) });
  });

  /** Reserves room for `n` images, runs `work`, and answers 503 / 504 when the limits say so. */
  async function bounded<T>(req: FastifyRequest, n: number, work: (signal: AbortSignal) => Promise<T>) {
    req.images = n;
    // More than the whole queue would be refused forever: that is the request's fault, not load.
    if (n > o.maxQueue) throw new HttpError(413, `${n} images is more than --max-queue ${o.maxQueue}`);
    if (!batcher.admit(n)) {
      const why = batcher.stopping
        ? "the server is stopping"
        : `busy: ${batcher.inFlight} images in flight (--max-queue ${o.maxQueue})`;
      throw new HttpError(503, why, { "retry-after": String(batcher.retryAfter()) });
    }
    const timeout = new AbortController();
    const running = work(timeout.signal);
    void running.then(
      () => batcher.release(n),
      () => batcher.release(n),
    );
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new HttpError(504, `not answered within ${o.timeoutMs} ms (--timeout-ms)`);
        timeout.abort(err);
        reject(err);
      }, o.timeoutMs);
    });
    try {
      return await Promise.race([running, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One image to its predictions, or the reason it has none. */
  async function predictOne(
    image: string,
    bytes: Buffer,
    topk: number,
    signal: AbortSignal,
  ): Promise<PredictResult> {
    try {
      const rgb = await transform.crop(await probeImage(image, bytes, o.maxPixels));
      return { image, predictions: topPredictions(await logits(rgb, signal), topk, labels) };
    } catch (err) {
      if (err instanceof BadImageError) return { image, predictions: [], error: err.message };
      throw err;
    }
  }

  app.post<{ Querystring: { topk?: number } }>(
    "/predict",
    {
      schema: {
        querystring: {
          type: "object",
          properties: { topk: { type: "integer", minimum: 1 } },
          additionalProperties: false,
        },
        response: { 200: predictionsSchema, "4xx": errorSchema, "5xx": errorSchema },
      },
    },
    async (req) => {
      const topk = Math.min(req.query.topk ?? o.topk, im.numClasses);
      if (!req.isMultipart()) {
        const body = rawImage(req);
        const [r] = await bounded(req, 1, (signal) => Promise.all([predictOne(BODY, body, topk, signal)]));
        if (r.error) throw new HttpError(422, r.error);
        return [r];
      }
      const files: { image: string; bytes: Buffer; truncated: boolean }[] = [];
      for await (const part of req.parts()) {
        if (part.type !== "file") continue;
        const bytes = await part.toBuffer();
        files.push({ image: part.filename || part.fieldname, bytes, truncated: part.file.truncated });
      }
      if (files.length === 0) throw new HttpError(400, "no image files in the form data");
      return bounded(req, files.length, (signal) =>
        Promise.all(
          files.map((f) =>
            f.truncated
              ? {
                  image: f.image,
                  predictions: [],
                  error: `${f.image}: over the ${o.maxImageBytes}-byte limit (--max-image-bytes)`,
                }
              : predictOne(f.image, f.bytes, topk, signal),
          ),
        ),
      );
    },
  );

  app.post(
    "/attention",
    { schema: { response: { "4xx": errorSchema, "5xx": errorSchema } } },
    async (req, reply) => {
      const body = rawImage(req);
      const png = await bounded(req, 1, async (signal) => {
        try {
          return await overlay(await probeImage(BODY, body, o.maxPixels), signal);
        } catch (err) {
          if (err instanceof BadImageError) throw new HttpError(422, err.message);
          throw err;
        }
      });
      return reply.type("image/png").send(png);
    },
  );

  app.get("/model", async () => ({
    preset: im.config.model.preset,
    name: im.config.name,
    classes: im.classes ?? Array.from({ length: im.numClasses }, (_, i) => String(i)),
    num_classes: im.numClasses,
    img_size: size,
    engine: ctx.engine,
    params: modelStats(im.classifier.cfg, im.numClasses).params,
    config: im.config,
  }));

  app.get("/healthz", async () => ({
    status: "ok",
    in_flight: batcher.inFlight,
    queued: batcher.queued,
  }));

  app.get("/", async (_req, reply) => reply.type("text/html; charset=utf-8").send(page));

  return {
    app,
    batcher,
    async close() {
      batcher.drain();
      await app.close();
    },
  };
}

/** The raw image body; anything else is 415 (multipart is /predict's alone). */
function rawImage(req: FastifyRequest): Buffer {
  if (!Buffer.isBuffer(req.body)) {
    throw new HttpError(415, "send one image as the body with Content-Type image/*");
  }
  return req.body;
}

/** The 4xx errors fastify and the multipart parser raise, said in terms of this server's flags. */
function limitMessage(err: Error & { code?: string }, o: ServeOptions): string {
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return `body over the ${o.maxImageBytes}-byte limit (--max-image-bytes)`;
    case "FST_FILES_LIMIT":
      return `more than ${o.maxImages} images in one request (--max-images)`;
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return "send an image (Content-Type image/*) or multipart/form-data";
    default:
      return err.message;
  }
}
