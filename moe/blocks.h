// The residual sublayers that models are built from, one per character of an
// architecture string as in the paper's code: s = self-attention, g = MoE with
// the top-k router, c = MoE with the AC router, f = dense FFN (Switch-S is
// "sgsgsc", GLaM-S "sgsfscsfscsf"). Each MoE layer hands its assignments to the
// next (dense layers in between pass them through); each attention layer hands
// its values on for elliptical attention. With soft_moe, g and c are Soft MoE
// layers without and with AC.
#pragma once
#include <string>

#include "moe/moe_layer.h"
#include "moe/soft_moe.h"
#include "nn/attention.h"

namespace moegrad {

struct BlockConfig {
  int64_t dim = 128, heads = 8, ffn_hidden = 512;
  bool causal = true;
  bool elliptical = false;  // attention layers after the first use the elliptical metric
  bool pre_norm = true;
  double dropout = 0.0;
  bool soft_moe = false;
  MoEConfig moe;        // top-k / AC MoE layers (dim is taken from above)
  SoftMoEConfig soft;   // Soft MoE layers (dim is taken from above)
};

// What flows along the stack besides the hidden states.
struct StackState {
  Assignments previous;  // the last MoE layer's assignments
  Tensor values;         // the last attention layer's values
  Tensor balance_loss;   // sum over MoE layers
  Tensor z_loss;         // sum over MoE layers
};

class Sublayer : public Module {
 public:
  Sublayer(char kind, const BlockConfig& config, const InitOptions& opt);
  // h: [B, T, dim] -> [B, T, dim]
  Tensor forward(const Tensor& h, StackState& state);
  bool pre_norm;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<MultiHeadAttention> attn;
  std::shared_ptr<MoELayer> moe;
  std::shared_ptr<SoftMoE> soft;
  std::shared_ptr<FFN> ffn;
  std::shared_ptr<Dropout> drop;
  RoutingStats stats() const;  // MoE sublayers: statistics of the last forward
};

// (position in the stack, statistics) of every MoE sublayer's last forward.
std::vector<std::pair<int64_t, RoutingStats>> stack_routing_stats(const std::vector<std::shared_ptr<Sublayer>>& layers);

// Validates the architecture string (only s, g, c, f; the first MoE layer must
// not be c, since AC needs an earlier MoE layer's assignments).
void check_architecture(const std::string& arch);

}  // namespace moegrad
