/**
 * One image to the model's input by the eval transform (resize, centre crop, normalise), for
 * images that arrive in memory rather than through the data loader (`vit serve`, `vit attention`).
 * The loader's eval batches run the same steps: evalImage, then the Normalizer.
 */
import type { DataConfig } from "../config/schema.js";
import type { ImageInput } from "../data/decode.js";
import { Normalizer } from "../data/normalize.js";
import { evalImage, type TransformOptions, transformOptions } from "../data/transforms.js";

export interface EvalPixels {
  /** The crop the model sees, 8-bit RGB `[size, size, 3]`. */
  rgb: Uint8Array;
  /** The model's input, `[size, size, inChans]` normalized. */
  input: Float32Array;
}

export class EvalTransform {
  private readonly transform: TransformOptions;
  private readonly normalizer: Normalizer;

  constructor(
    data: DataConfig,
    readonly size: number,
    readonly inChans: number,
  ) {
    this.transform = transformOptions(data, size);
    this.normalizer = new Normalizer(inChans, data.mean, data.std);
  }

  /** Floats in one image's input. */
  get stride(): number {
    return this.size * this.size * this.inChans;
  }

  /** Decodes `img` to the crop the model sees; a corrupt one throws BadImageError. */
  crop(img: ImageInput): Promise<Uint8Array> {
    return evalImage(img, this.transform);
  }

  /** Writes the model's input for a crop at `dst[offset...]` (a batch's slot). */
  normalizeInto(dst: Float32Array, offset: number, rgb: Uint8Array): void {
    this.normalizer.into(dst, offset, rgb);
  }

  async apply(img: ImageInput): Promise<EvalPixels> {
    const rgb = await this.crop(img);
    const input = new Float32Array(this.stride);
    this.normalizeInto(input, 0, rgb);
    return { rgb, input };
  }
}
