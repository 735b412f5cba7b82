// Evaluating a language model over batches of windows, for train_lm and the
// evaluate_lm program. Two evaluations. Batch (train_lm's, and the paper's):
// each batch in one forward, so an AC layer's statistics come from the whole
// batch and a token's routing depends on later tokens of its own window.
// Causal: each token scored from its own prefix only, as at generation
// (moe/decoder.h): an AC layer's statistics come from that window's tokens so
// far. The difference between the two is what the batch statistics give an AC
// model.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "examples/common/progress.h"
#include "examples/common/text_data.h"
#include "moe/transformer_lm.h"

namespace moegrad::lm {

enum class EvalMode { Batch, Causal };

struct EvalResult {
  double loss = 0;    // mean cross-entropy per target token, in nats
  double metric = 0;  // bits per byte (byte level) or perplexity (word level)
  int64_t tokens = 0, batches = 0;
  // batch evaluation, per MoE layer (position in arch): routing statistics
  // summed (tokens, dropped) or averaged (losses, AC statistics; min/max over)
  // over the batches
  std::vector<std::pair<int64_t, RoutingStats>> routing;
};

// Sums (tokens, dropped) or accumulates for averaging (losses, AC statistics)
// the routing statistics of one more forward into acc; average_routing then
// divides what is averaged by the number of forwards.
void accumulate_routing(std::vector<std::pair<int64_t, RoutingStats>>& acc,
                        const std::vector<std::pair<int64_t, RoutingStats>>& batch);
void average_routing(std::vector<std::pair<int64_t, RoutingStats>>& acc, int64_t forwards);

// The four evaluation splits: valid and test, clean and under the word-swap
// attack (applied to the raw text, so every model sees the same attacked
// text), as eval_batches of `batch` windows of `seq_len` tokens.
struct EvalSplits {
  std::vector<data::Batch> valid, test, valid_attacked, test_attacked;
  int64_t valid_swapped = 0, test_swapped = 0;  // words the attack replaced
  const std::vector<data::Batch>& get(const std::string& split, bool attacked) const;
};
EvalSplits make_eval_splits(const std::string& valid_text, const std::string& test_text,
                            const data::Tokenizer& tokenizer, const std::string& level, double attack_rate,
                            int64_t attack_seed, int64_t batch, int64_t seq_len);

// The mean cross-entropy per target token over the first max_batches (<= 0:
// all) batches, and the metric (bits per byte when byte_level, else
// perplexity). Batch mode also sums the routing statistics. The model runs in
// eval mode without a graph; progress (may be null) advances one step per batch.
EvalResult evaluate_lm(TransformerLM& model, const std::vector<data::Batch>& batches, int64_t max_batches,
                       EvalMode mode, Device device, bool byte_level, data::Progress* progress = nullptr);

}  // namespace moegrad::lm
