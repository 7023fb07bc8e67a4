/**
 * Every tensor finite, checked on every load and every save: a diverged run's NaN weights would
 * otherwise predict "NaN%" for every class, or resume into more NaN, without a word.
 */
import { DataError } from "../errors.js";
import type { TensorData } from "../tensor.js";

/**
 * Throws a DataError naming the first tensor (in the given order) that holds NaN or ±Inf, and
 * where; `where` starts the message: the file read, or "not saving FILE".
 */
export function checkFinite(tensors: Iterable<[string, TensorData]>, where: string): void {
  for (const [name, t] of tensors) {
    const { data } = t;
    for (let i = 0; i < data.length; i++) {
      // One comparison per value: x - x is 0 for finite x, NaN for NaN and ±Inf.
      if (data[i] - data[i] !== 0) {
        throw new DataError(
          `${where}: tensor "${name}" holds ${data[i]} (at flat index ${i} of ${data.length}); ` +
            "only finite weights are loaded or saved (a diverged run?)",
        );
      }
    }
  }
}
