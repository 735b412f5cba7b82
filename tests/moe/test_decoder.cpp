// Incremental decoding (moe/decoder.h): for sgsgsc models with the top-k
// router, with AC (MAD and variance, per-feature and global scaling, mixing
// over two previous choices, the official small clusters and table rows),
// with elliptical attention, pre- and post-norm (the double residual), the
// logits at every position of every sequence equal those of a full forward
// over that sequence's prefix, in float64 to 1e-12; errors.
#include <cmath>

#include "moe/blocks.h"
#include "moe/decoder.h"
#include "moe/experts.h"
#include "test_cuda_helpers.h"

using namespace moegrad;

namespace {

struct Variant {
  explicit Variant(std::string n, std::string a = "sgsgsc") : name(std::move(n)), arch(std::move(a)) {}
  std::string name, arch;
  ACOptions ac;
  int64_t mix = 1;
  bool elliptical = false, pre_norm = true;
};

std::vector<Variant> variants() {
  std::vector<Variant> out;
  out.push_back(Variant("top-k", "sgsgsg"));
  for (ACStat stat : {ACStat::MAD, ACStat::Variance})
    for (ACScaling scaling : {ACScaling::PerFeature, ACScaling::Global}) {
      Variant v("ac");
      v.ac.stat = stat, v.ac.scaling = scaling;
      v.name += stat == ACStat::MAD ? " mad" : " variance";
      v.name += scaling == ACScaling::Global ? " global" : " feature";
      out.push_back(v);
    }
  Variant mix("ac mixing");
  mix.mix = 2;
  out.push_back(mix);
  Variant official("ac official rows, neutral");
  official.ac.rows = ACTableRows::LargestIndex, official.ac.small_clusters = ACSmallClusters::Neutral;
  out.push_back(official);
  Variant elliptical("ac elliptical");
  elliptical.elliptical = true;
  out.push_back(elliptical);
  Variant post("ac post-norm double residual");
  post.pre_norm = false;
  out.push_back(post);
  return out;
}

std::shared_ptr<TransformerLM> make(const Variant& v) {
  LMConfig c;
  c.vocab = 11, c.max_len = 8, c.arch = v.arch;
  BlockConfig& b = c.block;
  b.dim = 8, b.heads = 2, b.elliptical = v.elliptical, b.pre_norm = v.pre_norm;
  b.moe_double_residual = !v.pre_norm;
  b.moe.hidden = 6, b.moe.experts = 4, b.moe.k = 2;
  b.moe.ac.stats = v.ac, b.moe.ac.mix_m = v.mix;
  Generator g(21);
  return std::make_shared<TransformerLM>(c, InitOptions{DType::Float64, &g});
}

}  // namespace

TEST(LMDecoder, IncrementalLogitsEqualAFullForwardOverThePrefix) {
  const std::vector<std::vector<int64_t>> sequences = {{3, 7, 1, 9, 2, 2, 5, 10}, {0, 4, 4, 8, 6, 1, 3, 7}};
  for (const Variant& v : variants()) {
    SCOPED_TRACE(v.name);
    auto model = make(v);
    LMDecoder decoder(*model, 2);
    for (int64_t t = 0; t < 8; ++t) {
      const Tensor logits = decoder.step(Tensor::from_indices({sequences[0][t], sequences[1][t]}, {2}));
      for (int64_t s = 0; s < 2; ++s) {
        std::vector<int64_t> prefix(sequences[s].begin(), sequences[s].begin() + t + 1);
        NoGradGuard no_grad;
        model->eval();
        const Tensor full = model->forward(Tensor::from_indices(prefix, {1, t + 1})).logits;
        const Tensor want = narrow(reshape(full, {t + 1, 11}), 0, t, 1);
        moegrad::testing::expect_near(narrow(logits, 0, s, 1).to_vector(), want.to_vector(), 1e-12);
      }
    }
    EXPECT_EQ(decoder.length(), 8);
    EXPECT_MG_ERROR(decoder.step(Tensor::from_indices({1, 2}, {2})), "the context is full (max_len 8)");
  }
}

TEST(LMDecoder, Errors) {
  auto model = make(variants()[1]);
  model->train();
  {
    LMDecoder decoder(*model, 2);
    EXPECT_FALSE(model->training());
    EXPECT_MG_ERROR(decoder.step(Tensor::from_indices({1}, {1})), "expected int64 ids [2]");
    EXPECT_MG_ERROR(decoder.step(Tensor::zeros({2})), "expected int64 ids [2]");
  }
  EXPECT_TRUE(model->training());  // restored
  EXPECT_MG_ERROR(LMDecoder(*model, 0), "batch must be positive");
  EXPECT_MG_ERROR(LMDecoder(*model, -3), "batch must be positive, got -3");
}

// The model's own checks of its configuration and inputs.
TEST(TransformerLM, Errors) {
  LMConfig c;
  c.vocab = 11, c.max_len = 8, c.arch = "sgsc";
  c.block.dim = 8, c.block.heads = 2, c.block.moe.hidden = 6, c.block.moe.experts = 4, c.block.moe.k = 2;
  auto bad = [&](auto change) {
    LMConfig b = c;
    change(b);
    return TransformerLM(b, InitOptions{DType::Float64});
  };
  EXPECT_MG_ERROR(bad([](LMConfig& b) { b.vocab = 0; }), "TransformerLM: vocab and max_len must be positive, got 0, 8");
  EXPECT_MG_ERROR(bad([](LMConfig& b) { b.max_len = -1; }), "vocab and max_len must be positive, got 11, -1");
  EXPECT_MG_ERROR(bad([](LMConfig& b) { b.embedding_std = 0; }), "TransformerLM: embedding_std must be positive");
  EXPECT_MG_ERROR(bad([](LMConfig& b) { b.embedding_std = INFINITY; }), "embedding_std must be positive and finite");
  TransformerLM model(c, InitOptions{DType::Float64});
  const Tensor ids = Tensor::from_indices({1, 2, 3, 4}, {2, 2});
  EXPECT_MG_ERROR(model.forward(Tensor::zeros({2, 2})), "TransformerLM: ids must be int64 [B, T], got float32 [2, 2]");
  EXPECT_MG_ERROR(model.forward(Tensor::from_indices({1, 2}, {2})), "ids must be int64 [B, T], got int64 [2]");
  EXPECT_MG_ERROR(model.forward(Tensor::from_indices(std::vector<int64_t>(9, 1), {1, 9})),
                  "TransformerLM: sequence length 9 exceeds max_len 8");
  EXPECT_MG_ERROR(model.forward(ids, Tensor::from_indices({1, 2}, {1, 2})),
                  "TransformerLM: targets must be int64 of the ids' shape [2, 2], got [1, 2]");
  EXPECT_MG_ERROR(model.forward(ids, Tensor(), Tensor::ones({2, 2})), "TransformerLM: mask must be bool");
  EXPECT_MG_ERROR(model.forward(ids, Tensor(), Tensor::zeros({2, 2}, DType::Bool)),
                  "TransformerLM: the mask leaves no real token");
  EXPECT_MG_ERROR(model.forward(Tensor::from_indices({1, 11}, {1, 2})), "11");  // an id past the vocabulary
}

// The building blocks' own refusals: the architecture string, the expert
// stack, and Soft MoE where a token may see only its past or must be masked.
TEST(Blocks, Errors) {
  EXPECT_MG_ERROR(check_architecture(""), "architecture: empty string");
  EXPECT_MG_ERROR(check_architecture("sx"), "architecture 'sx': unknown layer 'x' at position 1");
  EXPECT_MG_ERROR(check_architecture("sc"), "architecture 'sc': the AC layer at position 1 has no earlier MoE layer");
  EXPECT_MG_ERROR(StackedExperts(0, 4, 3), "StackedExperts: experts, dim and hidden must be positive, got 0, 4, 3");
  StackedExperts experts(2, 4, 3, InitOptions{DType::Float64});
  EXPECT_MG_ERROR(experts.forward_batched(Tensor::zeros({3, 5, 4}, DType::Float64)),
                  "StackedExperts: expected [2, N, 4], got [3, 5, 4]");
  LMConfig c;
  c.vocab = 11, c.max_len = 8, c.arch = "sgsg";
  c.block.dim = 8, c.block.heads = 2, c.block.soft_moe = true;
  c.block.soft.hidden = 6, c.block.soft.experts = 4;
  TransformerLM soft(c, InitOptions{DType::Float64});
  EXPECT_MG_ERROR(LMDecoder(soft, 1), "LMDecoder: Soft MoE layers are not causal");
  const Tensor ids = Tensor::from_indices({1, 2, 3, 4}, {1, 4});
  EXPECT_MG_ERROR(soft.forward(ids, Tensor(), Tensor::from_vector({1, 1, 1, 0}, {1, 4}, DType::Bool)),
                  "Sublayer: Soft MoE layers take no token mask");
}

// The decoder on a CUDA device gives the CPU's logits (float64, 1e-10: the
// device's matrix products sum in another order).
TEST(CudaLMDecoder, MatchesTheCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (const Variant& v : variants()) {
    SCOPED_TRACE(v.name);
    auto cpu = make(v), gpu = make(v);
    gpu->to(Device::cuda(0));
    LMDecoder a(*cpu, 2), b(*gpu, 2);
    for (int64_t t = 0; t < 8; ++t) {
      const Tensor ids = Tensor::from_indices({(3 * t + 1) % 11, (5 * t + 2) % 11}, {2});
      moegrad::testing::expect_near(b.step(ids.to(Device::cuda(0))).to_vector(), a.step(ids).to_vector(), 1e-10);
    }
  }
}
