/**
 * Building one batch: which samples it holds (a pure function of seed, epoch and step), their
 * transforms, and the bad-image policy. It runs inside the loader's worker threads and knows
 * nothing about threads itself.
 *
 * Bad images: in training, a slot whose image cannot be decoded takes the next decodable image
 * of the epoch's order (augmented with the slot's own random stream), so every batch keeps its
 * size and a resumed run sees the same substitutes. In evaluation the image is dropped and the
 * batch is shorter: an evaluation must not count an image twice. Either way the batch reports
 * the bad images of its own slots, so each is counted once per epoch.
 */
import type { DataConfig } from "../config/schema.js";
import { DataError } from "../errors.js";
import { BadImageError, type ImageInput, openImage } from "./decode.js";
import { Normalizer, randomErase } from "./normalize.js";
import { epochRng, type Rng, shuffle, slotRng } from "./random.js";
import { evalImage, type TransformOptions, trainImage, transformOptions, workingCopy } from "./transforms.js";

/** Everything a batch builder needs; plain data, so it crosses to a worker thread as it is. */
export interface LoaderSpec {
  train: boolean;
  batchSize: number;
  dropLast: boolean;
  imgSize: number;
  inChans: number;
  seed: number;
  data: DataConfig;
}

/** Images decoded at most this many at a time per builder, so JS work overlaps sharp's. */
const IMAGES_IN_FLIGHT = 2;

export function stepsPerEpoch(n: number, batchSize: number, dropLast: boolean): number {
  return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

/** Sample indices in the order epoch `epoch` visits them: seeded shuffle in training, file order otherwise. */
export function epochOrder(n: number, seed: number, epoch: number, shuffled: boolean): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  return shuffled ? shuffle(epochRng(seed, epoch), order) : order;
}

export interface BadImage {
  index: number;
  file: string;
  reason: string;
}

/** A decoded image kept in memory (`data.cache`), in shared memory so every worker can read it. */
export type CachedImage = ImageInput & { raw: true };

export interface BuiltBatch {
  epoch: number;
  step: number;
  size: number;
  /** [size, imgSize, imgSize, inChans], normalized. */
  images: Float32Array;
  labels: Int32Array;
  /** Dataset index of each image (a substitute's index where a bad image was replaced). */
  indices: Int32Array;
  /** Bad images among this batch's own slots. */
  bad: BadImage[];
  /** Images this batch decoded into the cache. */
  cached: [number, CachedImage][];
}

export class BatchBuilder {
  readonly transform: TransformOptions;
  private readonly normalizer: Normalizer;
  private readonly cache = new Map<number, CachedImage>();
  /** Bad images seen so far: reported again each epoch without decoding them again. */
  private readonly knownBad = new Map<number, BadImageError>();
  private order: { epoch: number; order: Int32Array } | null = null;

  constructor(
    private readonly paths: readonly string[],
    private readonly labels: Int32Array,
    readonly spec: LoaderSpec,
  ) {
    this.transform = transformOptions(spec.data, spec.imgSize);
    this.normalizer = new Normalizer(spec.inChans, spec.data.mean, spec.data.std);
  }

  get steps(): number {
    return stepsPerEpoch(this.paths.length, this.spec.batchSize, this.spec.dropLast);
  }

  /** Cached images decoded elsewhere (another worker). */
  addToCache(entries: readonly [number, CachedImage][]): void {
    for (const [i, img] of entries) this.cache.set(i, img);
  }

  private orderOf(epoch: number): Int32Array {
    if (this.order?.epoch !== epoch) {
      this.order = { epoch, order: epochOrder(this.paths.length, this.spec.seed, epoch, this.spec.train) };
    }
    return this.order.order;
  }

  async build(epoch: number, step: number): Promise<BuiltBatch> {
    const { spec } = this;
    const order = this.orderOf(epoch);
    const start = step * spec.batchSize;
    const count = Math.min(spec.batchSize, order.length - start);
    if (step < 0 || count <= 0)
      throw new RangeError(`step ${step} is outside the epoch (${this.steps} steps)`);
    const S = spec.imgSize;
    const stride = S * S * spec.inChans;
    const images = new Float32Array(count * stride);
    const labels = new Int32Array(count);
    const indices = new Int32Array(count);
    const kept = new Array<boolean>(count).fill(false);
    const bad: BadImage[] = [];
    const cached: [number, CachedImage][] = [];

    const fillSlot = async (slot: number) => {
      const position = start + slot;
      const first = order[position];
      for (let k = 0; k < order.length; k++) {
        const index = order[(position + k) % order.length];
        let error = this.knownBad.get(index);
        if (error && k > 0) continue;
        if (!error) {
          try {
            const rng = slotRng(spec.seed, epoch, position);
            this.normalizer.into(images, slot * stride, await this.image(index, rng, cached));
            if (spec.train && spec.data.aug.random_erasing > 0) {
              randomErase(images, slot * stride, S, spec.inChans, spec.data.aug.random_erasing, rng);
            }
            labels[slot] = this.labels[index];
            indices[slot] = index;
            kept[slot] = true;
            return;
          } catch (err) {
            if (!(err instanceof BadImageError)) throw err;
            error = err;
            this.knownBad.set(index, err);
          }
        }
        if (index === first) {
          if (spec.data.on_bad_image === "fail") throw new DataError(`bad image ${error.message}`);
          bad.push({ index, file: error.file, reason: error.reason });
        }
        if (!spec.train) return;
      }
      throw new DataError(`no image of the dataset could be decoded (first: ${this.paths[first]})`);
    };

    let next = 0;
    const lane = async () => {
      while (next < count) await fillSlot(next++);
    };
    await Promise.all(Array.from({ length: Math.min(IMAGES_IN_FLIGHT, count) }, lane));

    const size = kept.filter(Boolean).length;
    if (size === count) return { epoch, step, size, images, labels, indices, bad, cached };
    // Evaluation dropped bad images: close the gaps.
    const keptSlots = kept.flatMap((k, i) => (k ? [i] : []));
    const packed = new Float32Array(size * stride);
    for (const [i, s] of keptSlots.entries())
      packed.set(images.subarray(s * stride, (s + 1) * stride), i * stride);
    return {
      epoch,
      step,
      size,
      images: packed,
      labels: Int32Array.from(keptSlots, (s) => labels[s]),
      indices: Int32Array.from(keptSlots, (s) => indices[s]),
      bad,
      cached,
    };
  }

  /** The RGB crop of one sample: decoded (or taken from the cache) and transformed. */
  private async image(index: number, rng: Rng, cached: [number, CachedImage][]): Promise<Uint8Array> {
    const hit = this.cache.get(index);
    const { train, data } = this.spec;
    if (!train && hit) return hit.data;
    let img: ImageInput = hit ?? (await openImage(this.paths[index]));
    if (train) {
      if (data.cache && !hit) {
        img = this.remember(index, await workingCopy(img, this.transform), cached);
      }
      return trainImage(img, this.transform, rng);
    }
    const px = await evalImage(img, this.transform);
    if (data.cache)
      this.remember(
        index,
        { ...img, data: px, raw: true, width: this.spec.imgSize, height: this.spec.imgSize },
        cached,
      );
    return px;
  }

  private remember(index: number, img: ImageInput, cached: [number, CachedImage][]): CachedImage {
    const shared = new Uint8Array(new SharedArrayBuffer(img.data.length));
    shared.set(img.data);
    const entry: CachedImage = { ...img, data: shared, raw: true };
    this.cache.set(index, entry);
    cached.push([index, entry]);
    return entry;
  }
}
