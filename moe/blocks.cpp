// Residual sublayers (see blocks.h).
#include "moe/blocks.h"

namespace moegrad {

void check_architecture(const std::string& arch) {
  MG_CHECK(!arch.empty(), "architecture: empty string");
  bool seen_moe = false;
  for (size_t i = 0; i < arch.size(); ++i) {
    const char c = arch[i];
    MG_CHECK(c == 's' || c == 'g' || c == 'c' || c == 'f', "architecture '", arch, "': unknown layer '", c,
             "' at position ", i, " (expected s, g, c or f)");
    MG_CHECK(c != 'c' || seen_moe, "architecture '", arch, "': the AC layer at position ", i,
             " has no earlier MoE layer to take assignments from; make the first MoE layer 'g'");
    seen_moe = seen_moe || c == 'g' || c == 'c';
  }
}

void check_block_config(const BlockConfig& c) {
  MG_CHECK(!c.moe_double_residual || !c.pre_norm,
           "BlockConfig: the double residual of the MoE sublayers needs post-norm blocks");
  MG_CHECK(!c.moe_double_residual || !c.soft_moe, "BlockConfig: the double residual is for top-k / AC MoE layers");
  MG_CHECK(!c.soft_moe || !c.expert_ranks || c.expert_ranks->world_size() == 1,
           "BlockConfig: expert parallelism is for top-k / AC MoE layers, not Soft MoE");
}

// The residual dropout of a sublayer of kind k: every sublayer's output
// (Residual layout), or only the MoE output (Official).
static double residual_dropout(char k, const BlockConfig& cfg) {
  if (cfg.dropout_layout == DropoutLayout::Residual) return cfg.dropout;
  return k == 'g' || k == 'c' ? cfg.dropout : 0.0;
}

Sublayer::Sublayer(char k, const BlockConfig& cfg, const InitOptions& opt) : kind(k), pre_norm(cfg.pre_norm) {
  check_block_config(cfg);
  norm = register_module("norm", std::make_shared<LayerNorm>(cfg.dim, 1e-5, opt));
  Generator& g = opt.generator();
  drop = register_module("drop", std::make_shared<Dropout>(residual_dropout(k, cfg), random_bits(g.seed(), g.take(1))));
  if (k == 's') {
    attn = register_module("attn", std::make_shared<MultiHeadAttention>(cfg.dim, cfg.heads, cfg.causal, cfg.dropout,
                                                                        opt, cfg.attention_bias));
    attn->elliptical = cfg.elliptical;
  } else if (k == 'f') {
    ffn = register_module("ffn", std::make_shared<FFN>(cfg.dim, cfg.ffn_hidden, cfg.dropout, opt, cfg.activation));
  } else if (cfg.soft_moe) {
    SoftMoEConfig sc = cfg.soft;
    sc.dim = cfg.dim;
    sc.use_ac = k == 'c';
    soft = register_module("moe", std::make_shared<SoftMoE>(sc, opt));
  } else {
    MoEConfig mc = cfg.moe;
    mc.dim = cfg.dim;
    mc.use_ac = k == 'c' && cfg.c_use_ac;
    if (k == 'c' && cfg.c_gate)
      mc.gate = *cfg.c_gate, mc.embedding_gain = cfg.c_embedding_gain, mc.embedding_norm = cfg.c_embedding_norm;
    if (cfg.dropout_layout == DropoutLayout::Official) mc.expert.dropout = cfg.dropout;
    moe = register_module("moe", std::make_shared<MoELayer>(mc, opt, cfg.expert_ranks));
    if (cfg.moe_double_residual) inner_norm = register_module("inner_norm", std::make_shared<LayerNorm>(cfg.dim, 1e-5, opt));
  }
}

static void accumulate(Tensor& total, const Tensor& term) { total = total.defined() ? add(total, term) : term; }

Tensor Sublayer::forward(const Tensor& h, StackState& state) {
  MG_CHECK(h.defined() && h.dim() == 3, "Sublayer: expected hidden states [B, T, dim], got ",
           h.defined() ? shape_str(h.shape()) : "undefined");
  const Tensor in = pre_norm ? norm->forward(h) : h;
  Tensor out;
  if (attn) {
    AttentionOutput a = attn->forward(in, state.values);
    state.values = a.values;
    out = a.y;
  } else if (ffn) {
    out = ffn->forward(in);
  } else if (soft) {
    MG_CHECK(!state.real_tokens.defined(), "Sublayer: Soft MoE layers take no token mask (every token is a slot's)");
    SoftMoEOutput s = soft->forward(in, state.previous);
    state.previous = s.assignments;
    out = s.y;
  } else {
    const int64_t B = in.size(0), T = in.size(1), d = in.size(2);
    const Tensor tokens = reshape(in, {B * T, d});
    const Tensor& real = state.real_tokens;
    MoEOutput m = moe->forward(real.defined() ? index_select(tokens, 0, real) : tokens, state.previous);
    state.previous = m.assignments;
    accumulate(state.balance_loss, m.balance_loss);
    accumulate(kind == 'c' ? state.c_balance_loss : state.g_balance_loss, m.balance_loss);
    accumulate(state.z_loss, m.z_loss);
    // padding rows get zero from the MoE layer
    const Tensor y = real.defined() ? index_add(Tensor::zeros({B * T, d}, in.dtype(), in.device()), 0, real, m.y) : m.y;
    out = reshape(y, {B, T, d});
  }
  return residual(h, out);
}

Tensor Sublayer::residual(const Tensor& h, const Tensor& core) {
  Tensor out = drop->forward(core);
  if (inner_norm) out = inner_norm->forward(add(h, out));  // the double residual
  Tensor sum = add(h, out);
  return pre_norm ? sum : norm->forward(sum);
}

std::vector<std::pair<int64_t, RoutingStats>> stack_routing_stats(const std::vector<std::shared_ptr<Sublayer>>& layers) {
  std::vector<std::pair<int64_t, RoutingStats>> out;
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i]->moe || layers[i]->soft) out.emplace_back(static_cast<int64_t>(i), layers[i]->stats());
  return out;
}

RoutingStats Sublayer::stats() const {
  if (moe) return moe->last_stats;
  if (soft) return soft->last_stats;
  return RoutingStats();
}

}  // namespace moegrad
