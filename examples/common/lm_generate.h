// Text generation from a trained language model (examples/generate): sampling
// the next token from the model's logits and the decoding loop over
// moe/decoder.h's incremental decoder.
#pragma once
#include <functional>
#include <vector>

#include "moe/transformer_lm.h"

namespace moegrad::lm {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (the most likely token)
  int64_t top_k = 0;         // keep the k most likely tokens; 0: all
  double top_p = 1.0;        // keep the fewest most likely tokens whose probability reaches p
};
// Error naming the option unless temperature >= 0, top_k >= 0 and 0 < top_p <= 1.
void check_sampling(const SamplingOptions& options);

// The next token from logits [V]: the argmax at temperature 0 (ties to the
// lower id); otherwise one draw (one counter of gen) from softmax(logits / T)
// restricted to the top_k most likely and then to the smallest set whose
// probability reaches top_p, renormalised.
int64_t sample_token(const std::vector<double>& logits, const SamplingOptions& options, Generator& gen);

// `tokens` new tokens after prompt (ids, at least one), decoded one by one
// with a key/value cache (and the AC statistics of the context so far). When
// the context reaches the model's max_len, decoding starts again from the
// last half of it. on_token (may be empty) sees each new token.
std::vector<int64_t> generate(TransformerLM& model, const std::vector<int64_t>& prompt, int64_t tokens,
                              const SamplingOptions& options, Generator& gen, Device device,
                              const std::function<void(int64_t)>& on_token = {});

}  // namespace moegrad::lm
