// Incremental decoding (see decoder.h): one step runs the token of each
// sequence through the sublayers, each attention layer over its cache, each
// AC layer with its sequence's context as the statistics.
#include "moe/decoder.h"

#include "autograd/node.h"

namespace moegrad {

// batch, or an Error unless it is positive (before anything is sized by it).
static int64_t checked_batch(int64_t batch) {
  MG_CHECK(batch > 0, "LMDecoder: batch must be positive, got ", batch);
  return batch;
}

LMDecoder::LMDecoder(TransformerLM& model, int64_t batch)
    : model_(model), batch_(checked_batch(batch)), was_training_(model.training()),
      attention_(model.layers.size()), context_(model.layers.size(), std::vector<ACContext>(batch_)) {
  for (const auto& layer : model.layers)
    MG_CHECK(!layer->soft, "LMDecoder: Soft MoE layers are not causal (slots mix the tokens of a sequence)");
  model_.eval();
}

LMDecoder::~LMDecoder() { model_.train(was_training_); }

// Appends the rows of t to all (along dim 0).
static void append(Tensor& all, const Tensor& t) { all = all.defined() ? concat({all, t}, 0) : t; }

Tensor LMDecoder::ac_layer(MoELayer& moe, const Tensor& tokens, Assignments& previous,
                           std::vector<ACContext>& context) {
  std::vector<Tensor> ys, indices, logits;
  for (int64_t b = 0; b < batch_; ++b) {
    const Tensor x = narrow(tokens, 0, b, 1);
    const Assignments prev{narrow(previous.indices, 0, b, 1),
                           previous.logits.defined() ? narrow(previous.logits, 0, b, 1) : Tensor()};
    ACContext& ctx = context[b];
    append(ctx.x, x);
    append(ctx.previous.indices, prev.indices);
    if (prev.logits.defined()) append(ctx.previous.logits, prev.logits);
    const ACStatistics statistics{ctx.x, ctx.previous};
    const MoEOutput o = moe.forward(x, prev, &statistics);
    ys.push_back(o.y), indices.push_back(o.assignments.indices), logits.push_back(o.assignments.logits);
  }
  previous = {concat(indices, 0), concat(logits, 0)};
  return concat(ys, 0);
}

Tensor LMDecoder::step(const Tensor& ids) {
  MG_CHECK(ids.defined() && ids.dtype() == DType::Int64 && ids.shape() == (Shape{batch_}),
           "LMDecoder: expected int64 ids [", batch_, "], got ",
           ids.defined() ? std::string(dtype_name(ids.dtype())) + " " + shape_str(ids.shape()) : "undefined");
  MG_CHECK(length_ < model_.config.max_len, "LMDecoder: the context is full (max_len ", model_.config.max_len, ")");
  NoGradGuard no_grad;
  const int64_t d = model_.config.block.dim;
  Tensor h = add(model_.tokens->forward(reshape(ids, {batch_, 1})), narrow(model_.positions->weight, 0, length_, 1));
  Assignments previous;
  Tensor values;
  for (size_t l = 0; l < model_.layers.size(); ++l) {
    Sublayer& layer = *model_.layers[l];
    const Tensor in = layer.pre_norm ? layer.norm->forward(h) : h;
    Tensor out;
    if (layer.attn) {
      AttentionOutput a = layer.attn->step(in, attention_[l], values);
      values = a.values;
      out = a.y;
    } else if (layer.ffn) {
      out = layer.ffn->forward(in);
    } else {
      const Tensor tokens = reshape(in, {batch_, d});
      Tensor y;
      if (layer.moe->config.use_ac) {
        y = ac_layer(*layer.moe, tokens, previous, context_[l]);
      } else {
        MoEOutput o = layer.moe->forward(tokens, previous);
        previous = o.assignments;
        y = o.y;
      }
      out = reshape(y, {batch_, 1, d});
    }
    h = layer.residual(h, out);
  }
  if (model_.final_norm) h = model_.final_norm->forward(h);
  ++length_;
  return reshape(model_.head->forward(h), {batch_, model_.config.vocab});
}

}  // namespace moegrad
