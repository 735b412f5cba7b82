// A decoder-only transformer language model built from an architecture string
// (moe/blocks.h): token + learned positional embeddings, the sublayers, a
// final LayerNorm (pre-norm models) and a linear head. forward returns the
// logits, the mean cross-entropy against targets when given, and the sums of
// the MoE layers' balance and z losses, which the trainer weights.
#pragma once
#include "moe/blocks.h"

namespace moegrad {

struct LMConfig {
  int64_t vocab = 256, max_len = 256;
  std::string arch = "sgsgsc";
  BlockConfig block;  // dim, heads, FFN and MoE settings (causal is forced on)
};

struct LMOutput {
  Tensor logits;        // [B, T, vocab]
  Tensor loss;          // scalar mean cross-entropy (targets given)
  Tensor balance_loss;  // sum over MoE layers (scalar zero when there are none)
  Tensor z_loss;
};

class TransformerLM : public Module {
 public:
  TransformerLM(const LMConfig& config, const InitOptions& opt = {});
  // ids, targets: int64 [B, T] (targets may be undefined; ignore_index -100).
  LMOutput forward(const Tensor& ids, const Tensor& targets = Tensor());
  // Routing statistics of every MoE sublayer, in order, with its position in arch.
  std::vector<std::pair<int64_t, RoutingStats>> routing_stats() const;
  LMConfig config;
  std::shared_ptr<Embedding> tokens;
  std::shared_ptr<PositionalEmbedding> positions;
  std::shared_ptr<Dropout> drop;
  std::vector<std::shared_ptr<Sublayer>> layers;
  std::shared_ptr<LayerNorm> final_norm;
  std::shared_ptr<Linear> head;
};

}  // namespace moegrad
