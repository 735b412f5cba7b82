// Sampling and the generation loop (see lm_generate.h).
#include "examples/common/lm_generate.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include "moe/decoder.h"

namespace moegrad::lm {

void check_sampling(const SamplingOptions& o) {
  MG_CHECK(std::isfinite(o.temperature) && o.temperature >= 0, "generate: --temperature must be >= 0, got ",
           o.temperature);
  MG_CHECK(o.top_k >= 0, "generate: --top-k must be >= 0, got ", o.top_k);
  MG_CHECK(o.top_p > 0 && o.top_p <= 1, "generate: --top-p must be in (0, 1], got ", o.top_p);
}

int64_t sample_token(const std::vector<double>& logits, const SamplingOptions& o, Generator& gen) {
  check_sampling(o);
  MG_CHECK(!logits.empty(), "sample_token: no logits");
  const int64_t V = static_cast<int64_t>(logits.size());
  for (int64_t i = 0; i < V; ++i)
    MG_CHECK(std::isfinite(logits[i]), "sample_token: the logit of token ", i, " is ", logits[i],
             " (has the model diverged?)");
  // token ids by descending logit, ties to the lower id
  std::vector<int64_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  if (o.temperature == 0) return order[0];
  const int64_t kept = o.top_k > 0 ? std::min(o.top_k, V) : V;
  std::vector<double> p(kept);
  for (int64_t i = 0; i < kept; ++i) p[i] = std::exp((logits[order[i]] - logits[order[0]]) / o.temperature);
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  int64_t nucleus = 0;
  double mass = 0;
  while (nucleus < kept && mass < o.top_p * total) mass += p[nucleus++];
  const double u = random_uniform(gen.seed(), gen.take(1)) * mass;
  double acc = 0;
  for (int64_t i = 0; i < nucleus; ++i)
    if ((acc += p[i]) > u) return order[i];
  return order[nucleus - 1];
}

std::vector<int64_t> generate(TransformerLM& model, const std::vector<int64_t>& prompt, int64_t tokens,
                              const SamplingOptions& options, Generator& gen, Device device,
                              const std::function<void(int64_t)>& on_token) {
  check_sampling(options);
  MG_CHECK(!prompt.empty(), "generate: the prompt must hold at least one token");
  MG_CHECK(tokens >= 0, "generate: the number of tokens must be >= 0, got ", tokens);
  const int64_t max_len = model.config.max_len, vocab = model.config.vocab;
  for (int64_t id : prompt)
    MG_CHECK(id >= 0 && id < vocab, "generate: prompt token ", id, " outside the vocabulary [0, ", vocab, ")");
  std::vector<int64_t> context = prompt, out;
  std::unique_ptr<LMDecoder> decoder;
  Tensor logits;
  // feeds context[from:] to a fresh decoder; the logits of its last token
  auto prefill = [&](size_t from) {
    decoder.reset();  // the old decoder restores the model's mode before the new one takes it
    decoder = std::make_unique<LMDecoder>(model, 1);
    for (size_t i = from; i < context.size(); ++i) logits = decoder->step(Tensor::from_indices({context[i]}, {1}).to(device));
  };
  prefill(context.size() > static_cast<size_t>(max_len) ? context.size() - max_len : 0);
  for (int64_t n = 0; n < tokens; ++n) {
    const int64_t next = sample_token(logits.to_vector(), options, gen);
    out.push_back(next), context.push_back(next);
    if (on_token) on_token(next);
    if (n + 1 == tokens) break;
    if (decoder->length() == max_len)
      prefill(context.size() - std::max<int64_t>(1, max_len / 2));  // full: start again from the last half
    else
      logits = decoder->step(Tensor::from_indices({next}, {1}).to(device));
  }
  return out;
}

}  // namespace moegrad::lm
