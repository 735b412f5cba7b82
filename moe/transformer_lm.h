// A decoder-only transformer language model built from an architecture string
// (moe/blocks.h): token + learned positional embeddings (dropout on them in
// the Residual dropout layout), the sublayers, a final LayerNorm (pre-norm
// models) and a linear head; input and output embeddings are separate. forward returns the
// logits, the mean cross-entropy against targets when given, and the sums of
// the MoE layers' balance and z losses, which the trainer weights.
#pragma once
#include "moe/blocks.h"

namespace moegrad {

struct LMConfig {
  int64_t vocab = 256, max_len = 256;
  std::string arch = "sgsgsc";
  BlockConfig block;  // dim, heads, FFN and MoE settings (causal is forced on)
  double embedding_std = 0.02;  // token and position embeddings start from N(0, std²)
  bool head_bias = false;       // a bias in the output projection
};

struct LMOutput {
  Tensor logits;        // [B, T, vocab]
  Tensor loss;          // scalar mean cross-entropy (targets given)
  Tensor balance_loss;  // sum over MoE layers (scalar zero when there are none)
  Tensor g_balance_loss, c_balance_loss;  // the same over the g and over the c layers
  Tensor z_loss;
};

class TransformerLM : public Module {
 public:
  TransformerLM(const LMConfig& config, const InitOptions& opt = {});
  // ids, targets: int64 [B, T] (targets may be undefined; ignore_index -100).
  // mask: bool [B, T], true for the real tokens, or undefined (all real);
  // padding takes no part in routing (StackState::real_tokens), and with
  // causal attention it cannot reach the real tokens before it, so a real
  // token's output does not depend on the padding after it.
  LMOutput forward(const Tensor& ids, const Tensor& targets = Tensor(), const Tensor& mask = Tensor());
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
