// The residual sublayers that models are built from, one per character of an
// architecture string as in the paper's code: s = self-attention, g = MoE with
// the top-k router, c = MoE with the AC router, f = dense FFN (Switch-S is
// "sgsgsc", GLaM-S "sgsfscsfscsf"). Each MoE layer hands its assignments to the
// next (dense layers in between pass them through); each attention layer hands
// its values on for elliptical attention. With soft_moe, g and c are Soft MoE
// layers without and with AC.
//
// A sublayer is h + drop(f(norm(h))) (pre-norm) or norm(h + drop(f(h)))
// (post-norm). With moe_double_residual (post-norm, as the paper's language
// models) a MoE sublayer is norm(h + norm_moe(h + drop(moe(h)))). Where
// dropout goes: DropoutLayout::Residual (moegrad's default) on the
// embeddings, the attention probabilities, every sublayer's output and
// inside the dense FFN; Official (the paper's code) on the attention
// probabilities, inside the dense FFN and the experts after the activation,
// and on the MoE output, but not on the embeddings or the attention and
// dense FFN outputs.
#pragma once
#include <optional>
#include <string>

#include "moe/moe_layer.h"
#include "moe/soft_moe.h"
#include "nn/attention.h"

namespace moegrad {

enum class DropoutLayout { Residual, Official };

struct BlockConfig {
  int64_t dim = 128, heads = 8, ffn_hidden = 512;
  bool causal = true;
  bool elliptical = false;  // attention layers after the first use the elliptical metric
  bool pre_norm = true;
  bool moe_double_residual = false;  // post-norm only
  bool attention_bias = true;        // biases in the attention's projections
  Activation activation = Activation::Gelu;  // of the dense FFN (the experts': moe.expert)
  double dropout = 0.0;
  DropoutLayout dropout_layout = DropoutLayout::Residual;
  bool soft_moe = false;
  MoEConfig moe;        // top-k / AC MoE layers (dim is taken from above)
  // c layers: moe with AC (unless c_use_ac is off) and, when c_gate is set,
  // their own gate (kind, embedding gain and norm as in RouterConfig)
  bool c_use_ac = true;
  std::optional<GateKind> c_gate;
  double c_embedding_gain = 0, c_embedding_norm = 0;
  SoftMoEConfig soft;   // Soft MoE layers (dim is taken from above)
  // Expert parallelism: the top-k / AC MoE layers split their experts over
  // these ranks (MoELayer); null or one rank: every expert here.
  dist::CommPtr expert_ranks;
};

// What flows along the stack besides the hidden states.
struct StackState {
  // When some tokens are padding: the rows (of the [B·T] tokens) of the real
  // ones, int64 on the model's device. MoE layers route only these, so padding
  // takes no part in any routing statistic (AC clusters, capacity, balance),
  // and their assignments cover only these rows. Undefined: every token is real.
  Tensor real_tokens;
  Assignments previous;  // the last MoE layer's assignments
  Tensor values;         // the last attention layer's values
  Tensor balance_loss;   // sum over MoE layers
  Tensor g_balance_loss, c_balance_loss;  // the same sum over the g and over the c layers only
  Tensor z_loss;         // sum over MoE layers
};

class Sublayer : public Module {
 public:
  Sublayer(char kind, const BlockConfig& config, const InitOptions& opt);
  // h: [B, T, dim] -> [B, T, dim]
  Tensor forward(const Tensor& h, StackState& state);
  // The sublayer around its core f: given h and out = f(norm(h)) (pre-norm) or
  // f(h) (post-norm), the dropout, the residual(s) and the post-norm.
  Tensor residual(const Tensor& h, const Tensor& out);
  char kind;  // s, g, c or f
  bool pre_norm;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<LayerNorm> inner_norm;  // moe_double_residual: norm_moe, registered "inner_norm"
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
// Error naming the option when BlockConfig's options contradict each other.
void check_block_config(const BlockConfig& config);

}  // namespace moegrad
