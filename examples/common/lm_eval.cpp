// Evaluating a language model, batch or causal (see lm_eval.h).
#include "examples/common/lm_eval.h"

#include <algorithm>
#include <cmath>

#include "autograd/node.h"
#include "examples/common/word_swap.h"
#include "moe/decoder.h"

namespace moegrad::lm {

void accumulate_routing(std::vector<std::pair<int64_t, RoutingStats>>& acc,
                        const std::vector<std::pair<int64_t, RoutingStats>>& batch) {
  if (acc.empty()) {
    acc = batch;
    return;
  }
  for (size_t i = 0; i < acc.size(); ++i) {
    RoutingStats &a = acc[i].second;
    const RoutingStats& s = batch[i].second;
    for (size_t e = 0; e < a.tokens_per_expert.size(); ++e) a.tokens_per_expert[e] += s.tokens_per_expert[e];
    a.dropped += s.dropped;
    a.balance_loss += s.balance_loss, a.z_loss += s.z_loss;
    a.ac_mean += s.ac_mean, a.ac_std += s.ac_std;
    a.ac_min = std::min(a.ac_min, s.ac_min), a.ac_max = std::max(a.ac_max, s.ac_max);
    a.ac_empty += s.ac_empty, a.ac_single += s.ac_single, a.ac_token_weight += s.ac_token_weight;
  }
}

void average_routing(std::vector<std::pair<int64_t, RoutingStats>>& acc, int64_t forwards) {
  for (auto& [pos, s] : acc) {
    s.balance_loss /= forwards, s.z_loss /= forwards, s.ac_mean /= forwards, s.ac_std /= forwards;
    s.ac_empty /= forwards, s.ac_single /= forwards, s.ac_token_weight /= forwards;
  }
}

const std::vector<data::Batch>& EvalSplits::get(const std::string& split, bool attacked) const {
  MG_CHECK(split == "valid" || split == "test", "evaluation: split must be valid or test, got '", split, "'");
  return split == "valid" ? (attacked ? valid_attacked : valid) : (attacked ? test_attacked : test);
}

EvalSplits make_eval_splits(const std::string& valid_text, const std::string& test_text,
                            const data::Tokenizer& tokenizer, const std::string& level, double attack_rate,
                            int64_t attack_seed, int64_t batch, int64_t seq_len) {
  const data::WordSwapOptions attack{attack_rate, static_cast<uint64_t>(attack_seed),
                                     level == "word" ? data::SwapLevel::Word : data::SwapLevel::Byte};
  const data::WordSwapResult valid_attacked = data::word_swap(valid_text, attack);
  const data::WordSwapResult test_attacked = data::word_swap(test_text, attack);
  auto batches = [&](const std::string& text, const char* split) {
    const std::vector<int64_t> ids = tokenizer.encode(text);
    MG_CHECK(ids.size() >= 2, "evaluation: the ", split, " split gives ", ids.size(), " tokens, need at least 2");
    return data::eval_batches(ids, batch, seq_len);
  };
  EvalSplits s;
  s.valid = batches(valid_text, "valid"), s.test = batches(test_text, "test");
  s.valid_attacked = batches(valid_attacked.text, "attacked valid");
  s.test_attacked = batches(test_attacked.text, "attacked test");
  s.valid_swapped = valid_attacked.swapped, s.test_swapped = test_attacked.swapped;
  return s;
}

namespace {

// Σ over the batch's targets of the cross-entropy, one forward.
double batch_loss_sum(TransformerLM& model, const data::Batch& b, Device device) {
  const Tensor mask = b.mask.defined() ? b.mask.to(device) : Tensor();
  return model.forward(b.inputs.to(device), b.targets.to(device), mask).loss.item() * static_cast<double>(b.tokens);
}

// The same, each position scored from its own prefix (one decoder step per position).
double causal_loss_sum(TransformerLM& model, const data::Batch& b, Device device) {
  const int64_t rows = b.inputs.size(0), T = b.inputs.size(1);
  const Tensor inputs = b.inputs.to(device);
  const std::vector<int64_t> targets = b.targets.to_indices();
  LMDecoder decoder(model, rows);
  double total = 0;
  for (int64_t t = 0; t < T; ++t) {
    const Tensor logits = decoder.step(contiguous(reshape(narrow(inputs, 1, t, 1), {rows})));
    int64_t count = 0;
    for (int64_t r = 0; r < rows; ++r) count += targets[r * T + t] != data::kIgnoreIndex;
    if (count == 0) continue;
    const Tensor column = contiguous(reshape(narrow(b.targets, 1, t, 1), {rows})).to(device);
    total += cross_entropy(logits, column, data::kIgnoreIndex).item() * static_cast<double>(count);
  }
  return total;
}

}  // namespace

EvalResult evaluate_lm(TransformerLM& model, const std::vector<data::Batch>& batches, int64_t max_batches,
                       EvalMode mode, Device device, bool byte_level, data::Progress* progress) {
  const int64_t n = max_batches > 0 ? std::min<int64_t>(max_batches, batches.size()) : batches.size();
  NoGradGuard no_grad;
  struct RestoreMode {  // eval mode for the evaluation, the caller's mode afterwards however it ends
    TransformerLM& m;
    bool was_training;
    ~RestoreMode() { m.train(was_training); }
  } mode_guard{model, model.training()};
  model.eval();
  EvalResult r;
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const data::Batch& b = batches[i];
    const double sum = mode == EvalMode::Causal ? causal_loss_sum(model, b, device) : batch_loss_sum(model, b, device);
    total += sum;
    r.tokens += b.tokens;
    if (mode == EvalMode::Batch) accumulate_routing(r.routing, model.routing_stats());
    if (progress) progress->update(i + 1, sum / static_cast<double>(std::max<int64_t>(b.tokens, 1)), b.tokens);
  }
  average_routing(r.routing, n);
  r.batches = n;
  r.loss = r.tokens > 0 ? total / static_cast<double>(r.tokens) : 0.0;
  r.metric = byte_level ? r.loss / std::log(2.0) : std::exp(r.loss);
  return r;
}

}  // namespace moegrad::lm
