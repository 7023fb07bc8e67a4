/**
 * timm param_groups_weight_decay: biases and norm weights (rank < 2) and the model's
 * `noWeightDecay()` names (tokens, position embedding) get no decay. Both engines' optimizers ask here.
 */
export function decays(name: string, shape: readonly number[], noWeightDecay: ReadonlySet<string>): boolean {
  return shape.length >= 2 && !noWeightDecay.has(name);
}
