/**
 * What `vit serve` can be told: where it listens and the limits that keep it up under load and
 * abuse. The CLI flags map one to one onto these keys.
 */
import { z } from "zod";

const positiveInt = z.number().int().positive();

export const ServeOptionsSchema = z
  .strictObject({
    /** Loopback unless told otherwise: a model server is not a public service by default. */
    host: z.string().min(1).default("127.0.0.1"),
    /** 0 picks a free port (tests). */
    port: z.number().int().min(0).max(65535).default(8080),
    /** The one origin allowed to call the API from a browser; null: no CORS headers at all. */
    cors: z.string().min(1).nullable().default(null),
    /** Classes per image when the request does not say `?topk=`. */
    topk: positiveInt.default(5),
    /** Images per forward pass. */
    maxBatch: positiveInt.default(32),
    /** How long the first image of a batch waits for others, in ms. */
    batchWindowMs: z.number().min(0).default(5),
    /** Images admitted at once (decoding, queued or running); beyond it requests get 503. */
    maxQueue: positiveInt.default(128),
    /** A request not answered in this time gets 504. */
    timeoutMs: positiveInt.default(30_000),
    /** Bytes of one image; a raw body over it gets 413, a multipart file over it an error entry. */
    maxImageBytes: positiveInt.default(16 * 1024 * 1024),
    /** Images in one multipart request; more gets 413. */
    maxImages: positiveInt.default(32),
    /** Decoded pixels of one image (width x height); more gets 422 (an error entry in multipart). */
    maxPixels: positiveInt.default(40_000_000),
    /** Side of the attention overlay PNG, in px. */
    overlaySize: z.number().int().min(16).max(2048).default(448),
  })
  .refine((o) => o.maxQueue >= o.maxBatch, {
    message: "--max-queue is less than --max-batch: a batch could never fill",
  });

export type ServeOptions = z.infer<typeof ServeOptionsSchema>;
