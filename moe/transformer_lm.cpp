// Transformer language model (see transformer_lm.h).
#include "moe/transformer_lm.h"

#include <cmath>

namespace moegrad {

TransformerLM::TransformerLM(const LMConfig& c, const InitOptions& opt) : config(c) {
  check_architecture(c.arch);
  MG_CHECK(c.vocab > 0 && c.max_len > 0, "TransformerLM: vocab and max_len must be positive, got ", c.vocab, ", ",
           c.max_len);
  config.block.causal = true;
  const int64_t d = c.block.dim;
  MG_CHECK(c.embedding_std > 0 && std::isfinite(c.embedding_std),
           "TransformerLM: embedding_std must be positive and finite, got ", c.embedding_std);
  tokens = register_module("tokens", std::make_shared<Embedding>(c.vocab, d, c.embedding_std, opt));
  positions = register_module("positions", std::make_shared<PositionalEmbedding>(c.max_len, d, c.embedding_std, opt));
  Generator& g = opt.generator();
  const double embedding_dropout = c.block.dropout_layout == DropoutLayout::Residual ? c.block.dropout : 0.0;
  drop = register_module("drop", std::make_shared<Dropout>(embedding_dropout, random_bits(g.seed(), g.take(1))));
  auto list = register_module("layers", std::make_shared<ModuleList>());
  for (char kind : c.arch) layers.push_back(list->append(std::make_shared<Sublayer>(kind, config.block, opt)));
  if (c.block.pre_norm) final_norm = register_module("final_norm", std::make_shared<LayerNorm>(d, 1e-5, opt));
  head = register_module("head", std::make_shared<Linear>(d, c.vocab, c.head_bias, opt));
}

LMOutput TransformerLM::forward(const Tensor& ids, const Tensor& targets, const Tensor& mask) {
  MG_CHECK(ids.defined() && ids.dtype() == DType::Int64 && ids.dim() == 2, "TransformerLM: ids must be int64 [B, T], got ",
           ids.defined() ? std::string(dtype_name(ids.dtype())) + " " + shape_str(ids.shape()) : "undefined");
  MG_CHECK(ids.size(1) <= config.max_len, "TransformerLM: sequence length ", ids.size(1), " exceeds max_len ",
           config.max_len);
  if (targets.defined())
    MG_CHECK(targets.shape() == ids.shape() && targets.dtype() == DType::Int64,
             "TransformerLM: targets must be int64 of the ids' shape ", shape_str(ids.shape()), ", got ",
             shape_str(targets.shape()));
  Tensor h = drop->forward(positions->forward(tokens->forward(ids)));
  StackState state;
  if (mask.defined()) {
    MG_CHECK(mask.dtype() == DType::Bool && mask.shape() == ids.shape(), "TransformerLM: mask must be bool of the ids' ",
             "shape ", shape_str(ids.shape()), ", got ", dtype_name(mask.dtype()), " ", shape_str(mask.shape()));
    const Tensor flat = contiguous(reshape(mask.to(Device::cpu()), {ids.numel()}));
    std::vector<int64_t> real;
    for (int64_t i = 0; i < flat.numel(); ++i)
      if (flat.data<bool>()[i]) real.push_back(i);
    MG_CHECK(!real.empty(), "TransformerLM: the mask leaves no real token");
    if (static_cast<int64_t>(real.size()) < ids.numel())
      state.real_tokens = Tensor::from_indices(real, {static_cast<int64_t>(real.size())}).to(ids.device());
  }
  for (auto& layer : layers) h = layer->forward(h, state);
  if (final_norm) h = final_norm->forward(h);
  LMOutput out;
  out.logits = head->forward(h);
  const DType dt = out.logits.dtype();
  const Device dev = out.logits.device();  // zero losses beside the logits, for the sums in the trainers
  auto or_zero = [&](const Tensor& t) { return t.defined() ? t : Tensor::zeros({}, dt, dev); };
  out.balance_loss = or_zero(state.balance_loss);
  out.g_balance_loss = or_zero(state.g_balance_loss), out.c_balance_loss = or_zero(state.c_balance_loss);
  out.z_loss = or_zero(state.z_loss);
  if (targets.defined()) {
    const int64_t n = ids.numel();
    out.loss = cross_entropy(reshape(out.logits, {n, config.vocab}), reshape(targets, {n}));
  }
  return out;
}

std::vector<std::pair<int64_t, RoutingStats>> TransformerLM::routing_stats() const { return stack_routing_stats(layers); }

}  // namespace moegrad
