// After training: a checkpoint loads into the same model (load_trained_lm),
// batch and causal evaluation (equal without AC, different with it), the
// final report with --eval both, sampling (greedy, top-k, top-p, the seed)
// and generation (greedy equals the argmax of a full forward, restarting
// when the context is full), and errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "examples/common/lm_generate.h"
#include "examples/common/lm_model.h"
#include "nn/safetensors.h"
#include "test_helpers.h"

using namespace moegrad;
using namespace moegrad::lm;
namespace fs = std::filesystem;

namespace {

class LMEvalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = (fs::path(::testing::TempDir()) / ("moegrad_lmeval_" + std::to_string(::getpid()) + "_" +
                                               ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                .string();
    fs::remove_all(root_);
    fs::create_directories(root_ + "/data");
    auto lines = [](int n) {
      std::string text;
      for (int i = 0; i < n; ++i) text += "and the lord said unto moses " + std::to_string(i % 7) + " .\n";
      return text;
    };
    std::ofstream(root_ + "/data/train.txt") << lines(200);
    for (const char* split : {"valid", "test"}) std::ofstream(root_ + "/data/" + split + ".txt") << lines(25);
  }
  void TearDown() override { fs::remove_all(root_); }

  LMTrainConfig tiny(const std::string& router) const {
    LMTrainConfig c;
    c.data = root_ + "/data", c.out = root_ + "/" + router, c.router = router, c.arch = "sgsc";
    c.dim = 16, c.heads = 2, c.experts = 4, c.k = 2, c.expert_hidden = 16, c.seq_len = 16, c.batch = 4;
    c.steps = 6, c.warmup = 2, c.log_every = 3, c.eval_every = 0, c.eval_batches = 2, c.checkpoint_every = 6;
    return c;
  }

  std::string root_;
};

}  // namespace

TEST_F(LMEvalTest, ACheckpointLoadsIntoTheSameModel) {
  LMTrainer t(tiny("acmoe"), nullptr);
  t.train();
  TrainedLM lm = load_trained_lm(t.checkpoint_path(), Device::cpu());
  EXPECT_EQ(lm.step, 6);
  EXPECT_EQ(lm.config.router, "acmoe");
  EXPECT_EQ(lm.tokenizer->save(), t.tokenizer().save());
  EXPECT_FALSE(lm.model->training());
  const auto a = lm.model->named_parameters(), b = t.model().named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].second.to_vector(), b[i].second.to_vector()) << a[i].first;
  // the same loss on the same batches
  const EvalSplits splits = make_eval_splits(data::read_text_file(root_ + "/data/valid.txt"),
                                             data::read_text_file(root_ + "/data/test.txt"), *lm.tokenizer, "byte",
                                             0.025, 2025, 4, 16);
  EXPECT_EQ(evaluate_lm(*lm.model, splits.valid, 3, EvalMode::Batch, Device::cpu(), true).loss,
            t.evaluate("valid", false, 3).loss);

  EXPECT_MG_ERROR(load_trained_lm(root_ + "/none.safetensors", Device::cpu()), "none.safetensors");
  // options that do not match the file's tensors are refused before the model is built
  SafetensorsFile file = load_safetensors(t.checkpoint_path());
  nlohmann::json config = nlohmann::json::parse(file.metadata.at("config"));
  config["experts"] = 1 << 20, config["c-gate"] = "xmoe";
  file.metadata["config"] = config.dump();
  save_safetensors(root_ + "/bigger.safetensors", file.tensors, file.metadata);
  EXPECT_MG_ERROR(load_trained_lm(root_ + "/bigger.safetensors", Device::cpu()),
                  "tensor 'model.layers.1.moe.experts.w1' is [4, 16, 16], but its options make it [1048576, 16, 16]");
  save_safetensors(root_ + "/other.safetensors", {{"x", Tensor::zeros({1})}}, {{"format", "something"}});
  EXPECT_MG_ERROR(load_trained_lm(root_ + "/other.safetensors", Device::cpu()), "format 'something'");
}

TEST(LMEval, ConfigFromJson) {
  LMTrainConfig c;
  c.dim = 64, c.router = "smoe", c.cosine = true, c.lr = 0.5;
  const LMTrainConfig back = config_from_json(config_to_json(c), "here");
  EXPECT_EQ(config_to_json(back), config_to_json(c));
  EXPECT_MG_ERROR(config_from_json(nlohmann::json{{"dim", "wide"}}, "here"), "here: option 'dim' has the wrong type");
  EXPECT_MG_ERROR(config_from_json(nlohmann::json{{"dimm", 3}}, "here"), "here: unknown option 'dimm'");
  EXPECT_MG_ERROR(config_from_json(nlohmann::json::array(), "here"), "not a JSON object");
  EXPECT_EQ(config_from_json(nlohmann::json::object(), "here").dim, LMTrainConfig().dim);  // defaults
}

// Without AC (and without capacity) a token's routing is its own, so the
// causal evaluation equals the batch evaluation; with AC it does not.
TEST_F(LMEvalTest, CausalEvaluation) {
  for (const char* router : {"smoe", "acmoe"}) {
    SCOPED_TRACE(router);
    LMTrainConfig c = tiny(router);
    c.eval = "both";
    LMTrainer t(c, nullptr);
    t.train();
    const EvalResult batch = t.evaluate("valid", false, 3), causal = t.evaluate("valid", false, 3, EvalMode::Causal);
    EXPECT_EQ(batch.tokens, causal.tokens);
    if (std::string(router) == "smoe")
      EXPECT_NEAR(causal.loss, batch.loss, 1e-5 * batch.loss);
    else
      EXPECT_GT(std::fabs(causal.loss - batch.loss), 1e-4);
    const FinalReport f = t.final_report();
    ASSERT_EQ(f.results.size(), 8u);
    EXPECT_EQ(f.results[4].first, "valid_causal");
    EXPECT_EQ(f.at("test_attacked_causal").tokens, f.at("test_attacked").tokens);
  }
}

TEST(LMGenerate, Sampling) {
  const std::vector<double> logits = {0.1, 2.0, 2.0, -1.0, 0.5};
  Generator g(3);
  EXPECT_EQ(sample_token(logits, {0.0, 0, 1.0}, g), 1);  // greedy, ties to the lower id
  EXPECT_EQ(g.offset(), 0u);                             // greedy draws nothing
  EXPECT_EQ(sample_token(logits, {1.0, 1, 1.0}, g), 1);  // top-1
  EXPECT_EQ(sample_token(logits, {1.0, 0, 1e-9}, g), 1); // the smallest nucleus
  // the draws follow the softmax: the two tied tokens about equally, token 3 rarely
  std::vector<int> counts(5, 0);
  for (int i = 0; i < 4000; ++i) counts[sample_token(logits, {1.0, 0, 1.0}, g)]++;
  EXPECT_NEAR(counts[1] / 4000.0, std::exp(2.0) / (std::exp(0.1) + 2 * std::exp(2.0) + std::exp(-1.0) + std::exp(0.5)),
              0.03);
  EXPECT_NEAR(counts[1], counts[2], 200);
  EXPECT_NEAR(counts[3] / 4000.0, std::exp(-1.0) / (std::exp(0.1) + 2 * std::exp(2.0) + std::exp(-1.0) + std::exp(0.5)),
              0.01);
  // top-k 2 keeps only the tied pair
  for (int i = 0; i < 100; ++i) EXPECT_LE(std::abs(sample_token(logits, {1.0, 2, 1.0}, g) - 1.5), 0.5);
  // the same seed gives the same draws
  Generator a(9), b(9);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sample_token(logits, {0.7, 0, 0.9}, a), sample_token(logits, {0.7, 0, 0.9}, b));
  EXPECT_MG_ERROR(sample_token(logits, {-1.0, 0, 1.0}, g), "--temperature must be >= 0");
  EXPECT_MG_ERROR(sample_token(logits, {1.0, -2, 1.0}, g), "--top-k must be >= 0");
  EXPECT_MG_ERROR(sample_token(logits, {1.0, 0, 0.0}, g), "--top-p must be in (0, 1]");
  EXPECT_MG_ERROR(sample_token({0.0, NAN, 1.0}, {1.0, 0, 1.0}, g), "the logit of token 1 is nan");
  EXPECT_MG_ERROR(sample_token({0.0, 1.0, -INFINITY}, {0.0, 0, 1.0}, g), "the logit of token 2 is -inf");
}

// Greedy generation is the argmax of a full forward over the context at each
// step, also past max_len, where decoding starts again from the last half.
TEST(LMGenerate, GreedyEqualsTheArgmaxOfAFullForward) {
  LMConfig c;
  c.vocab = 9, c.max_len = 6, c.arch = "sgsg";
  c.block.dim = 8, c.block.heads = 2, c.block.moe.hidden = 6, c.block.moe.experts = 3;
  Generator init(5);
  TransformerLM model(c, {DType::Float64, &init});
  Generator gen(0);
  const std::vector<int64_t> prompt = {2, 7, 1};
  const std::vector<int64_t> out = generate(model, prompt, 10, {0.0, 0, 1.0}, gen, Device::cpu());
  ASSERT_EQ(out.size(), 10u);
  std::vector<int64_t> context = prompt;
  size_t start = 0;  // the decoder's window: when it holds 6 tokens, decoding restarts from the last 3
  for (int64_t next : out) {
    NoGradGuard no_grad;
    model.eval();
    const std::vector<int64_t> window(context.begin() + start, context.end());
    const int64_t T = static_cast<int64_t>(window.size());
    const std::vector<double> logits =
        narrow(reshape(model.forward(Tensor::from_indices(window, {1, T})).logits, {T, 9}), 0, T - 1, 1).to_vector();
    EXPECT_EQ(next, std::max_element(logits.begin(), logits.end()) - logits.begin());
    context.push_back(next);
    if (T == 6) start = context.size() - 3;
  }
  // generation leaves the model's mode as it found it, also across context restarts
  model.train();
  generate(model, {1}, 14, {0.0, 0, 1.0}, gen, Device::cpu());
  EXPECT_TRUE(model.training());
  EXPECT_MG_ERROR(generate(model, {}, 3, {}, gen, Device::cpu()), "at least one token");
  EXPECT_MG_ERROR(generate(model, {9}, 3, {}, gen, Device::cpu()), "prompt token 9 outside the vocabulary [0, 9)");
}
