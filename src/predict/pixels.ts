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

  /** Decodes `img`; a corrupt one throws BadImageError. */
  async apply(img: ImageInput): Promise<EvalPixels> {
    const rgb = await evalImage(img, this.transform);
    const input = new Float32Array(this.size * this.size * this.inChans);
    this.normalizer.into(input, 0, rgb);
    return { rgb, input };
  }
}
