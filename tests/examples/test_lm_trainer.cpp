// Tests of the language-model trainer (examples/common/lm_trainer) on a tiny
// generated corpus with a tiny model: a resumed run equals the uninterrupted
// one bit for bit, the schedule and gradient clipping, evaluation as bits per
// byte / perplexity clean and attacked, the metrics file, the command line,
// and every failure mode (missing data, empty file, vocabulary or config
// mismatch on resume, corrupt or truncated checkpoint, NaN loss).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "examples/common/lm_trainer.h"
#include "nn/checkpoint.h"
#include "test_helpers.h"

using namespace moegrad;
using namespace moegrad::lm;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::vector<json> records(const std::string& path, const std::string& type) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line);
    if (j["type"] == type) out.push_back(j);
  }
  return out;
}

// `lines` lines of 6-10 words drawn from a small word list by a seeded generator.
std::string sentences(int lines, uint64_t seed, const std::vector<std::string>& words) {
  Generator gen(seed);
  std::string text;
  for (int i = 0; i < lines; ++i) {
    const int64_t n = 6 + static_cast<int64_t>(random_bits(gen.seed(), gen.take(1)) % 5);
    for (int64_t w = 0; w < n; ++w)
      text += (w ? " " : "") + words[random_bits(gen.seed(), gen.take(1)) % words.size()];
    text += " .\n";
  }
  return text;
}

const std::vector<std::string> kWords = {"the",  "lord",   "said", "unto",  "moses", "and",   "land",  "of",
                                         "egypt", "people", "went", "house", "king",  "david", "city",  "water",
                                         "bread", "day",    "night", "earth", "heaven", "sons", "gold", "river"};

class LMTrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = (fs::path(::testing::TempDir()) / ("moegrad_lm_" + std::to_string(::getpid()) + "_" + info->name()))
                .string();
    fs::remove_all(root_);
    data_ = root_ + "/data";
    fs::create_directories(data_);
    write_file(data_ + "/train.txt", sentences(120, 1, kWords));
    write_file(data_ + "/valid.txt", sentences(20, 2, kWords));
    write_file(data_ + "/test.txt", sentences(20, 3, kWords));
  }
  void TearDown() override { fs::remove_all(root_); }

  // A tiny Switch-style model with an AC layer, dropout on, checkpoints every 5 steps.
  LMTrainConfig tiny(const std::string& out) const {
    LMTrainConfig c;
    c.data = data_, c.out = root_ + "/" + out;
    c.arch = "sgsc", c.router = "acmoe";
    c.dim = 16, c.heads = 2, c.experts = 4, c.k = 2, c.expert_hidden = 16, c.ffn_hidden = 16;
    c.seq_len = 16, c.batch = 4, c.dropout = 0.1;
    c.optimizer = "adamw", c.weight_decay = 0.01, c.lr = 3e-3, c.warmup = 3, c.cosine = true, c.min_lr = 3e-4;
    c.steps = 20, c.log_every = 1, c.eval_every = 5, c.eval_batches = 2, c.checkpoint_every = 5;
    return c;
  }

  std::string root_, data_;
};

}  // namespace

TEST_F(LMTrainerTest, ResumeIsBitExact) {
  const LMTrainConfig c = tiny("whole");
  LMTrainer whole(c, nullptr);
  whole.train();
  ASSERT_EQ(whole.history().size(), 20u);

  LMTrainConfig ci = tiny("interrupted");
  {
    LMTrainer first(ci, nullptr);
    first.train(12);  // "killed" after step 12: the checkpoint of step 10 survives
    EXPECT_EQ(first.step(), 12);
  }
  ci.resume = true;
  LMTrainer resumed(ci, nullptr);
  EXPECT_EQ(resumed.step(), 10);
  resumed.train();
  ASSERT_EQ(resumed.history().size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    const StepRecord &a = whole.history()[10 + i], &b = resumed.history()[i];
    EXPECT_EQ(a.step, b.step);
    EXPECT_EQ(a.loss, b.loss) << "step " << a.step;
    EXPECT_EQ(a.grad_norm, b.grad_norm) << "step " << a.step;
    EXPECT_EQ(a.lr, b.lr);
  }
  // The metrics file of the resumed run holds each step once, with the same losses.
  const std::vector<json> a = records(whole.metrics_path(), "train"), b = records(resumed.metrics_path(), "train");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["step"], b[i]["step"]);
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>());
  }
  EXPECT_EQ(records(resumed.metrics_path(), "eval").size(), 4u);
  // And the final weights are the same bits.
  const auto pa = whole.model().named_parameters(), pb = resumed.model().named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_EQ(pa[i].second.to_vector(), pb[i].second.to_vector()) << pa[i].first;
}

TEST_F(LMTrainerTest, CheckpointHoldsEverything) {
  LMTrainer t(tiny("run"), nullptr);
  t.train(5);
  const SafetensorsFile f = load_safetensors(t.checkpoint_path());
  EXPECT_EQ(f.metadata.at("step"), "5");
  EXPECT_EQ(f.metadata.at("vocab"), t.tokenizer().save());
  EXPECT_EQ(json::parse(f.metadata.at("config")), config_to_json(t.config()));
  const json rng = json::parse(f.metadata.at("rng"));
  EXPECT_TRUE(rng.contains("batch"));
  for (const auto& [name, gen] : t.model().named_generators()) {
    ASSERT_TRUE(rng.contains("model." + name)) << name;
    EXPECT_EQ(rng["model." + name][1].get<uint64_t>(), gen->offset());
  }
  for (const auto& [name, p] : t.model().named_parameters()) {
    EXPECT_EQ(f.tensors.at("model." + name).to_vector(), p.to_vector()) << name;
    EXPECT_EQ(f.tensors.at("optim." + name + ".step").to_indices()[0], 5);
    EXPECT_EQ(f.tensors.at("optim." + name + ".m").shape(), p.shape());
    EXPECT_EQ(f.tensors.at("optim." + name + ".v").shape(), p.shape());
  }
}

TEST_F(LMTrainerTest, SameSeedSameStartForBothRouters) {
  LMTrainConfig c = tiny("ac");
  LMTrainer ac(c, nullptr);
  c.router = "smoe", c.out = root_ + "/smoe";
  LMTrainer smoe(c, nullptr);
  EXPECT_EQ(effective_arch(c), "sgsg");
  const auto pa = ac.model().named_parameters(), pb = smoe.model().named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_EQ(pa[i].second.to_vector(), pb[i].second.to_vector()) << pa[i].first;
  }
}

TEST_F(LMTrainerTest, EvaluationMetricsAndRecords) {
  LMTrainConfig c = tiny("byte");
  c.steps = 10;
  LMTrainer t(c, nullptr);
  t.train();
  const EvalResult v = t.evaluate("valid", false, 0);
  EXPECT_EQ(v.tokens, static_cast<int64_t>(read_file(data_ + "/valid.txt").size()) - 1);  // every byte after the first
  EXPECT_NEAR(v.metric, v.loss / std::log(2.0), 1e-12);
  const EvalResult va = t.evaluate("valid", true, 0);
  EXPECT_NE(va.tokens, v.tokens);  // "<unk>" replaces words of other lengths
  EXPECT_EQ(t.evaluate("valid", false, 2).batches, 2);
  ASSERT_EQ(v.routing.size(), 2u);  // the g and c layers
  // No capacity: every real token sends k = 2 slots; the last window's padding none.
  for (const auto& [pos, stats] : v.routing) {
    int64_t routed = 0;
    for (int64_t n : stats.tokens_per_expert) routed += n;
    EXPECT_EQ(routed, 2 * v.tokens) << "layer " << pos;
  }
  EXPECT_GT(v.routing[1].second.ac_max, 0.0);
  EXPECT_MG_ERROR(t.evaluate("train", false, 0), "split must be valid or test");

  const FinalReport f = t.final_report();
  EXPECT_EQ(f.at("valid").loss, v.loss);
  EXPECT_EQ(f.at("valid_attacked").loss, va.loss);
  EXPECT_GT(f.tokens_per_second, 0);
  // metrics.jsonl: a train record per step, evals at 5 and 10 with per-layer
  // routing (AC statistics only for the c layer), and the final record.
  EXPECT_EQ(records(t.metrics_path(), "train").size(), 10u);
  const std::vector<json> evals = records(t.metrics_path(), "eval");
  ASSERT_EQ(evals.size(), 2u);
  EXPECT_EQ(evals[1]["step"], 10);
  const json& layers = evals[1]["layers"];
  ASSERT_EQ(layers.size(), 2u);
  EXPECT_EQ(layers[0]["layer"], 1);
  EXPECT_FALSE(layers[0].contains("ac_mean"));
  EXPECT_EQ(layers[1]["tokens_per_expert"].size(), 4u);
  for (const char* key : {"ac_mean", "ac_std", "ac_min", "ac_max", "balance_loss", "dropped"})
    EXPECT_TRUE(layers[1].contains(key)) << key;
  const std::vector<json> finals = records(t.metrics_path(), "final");
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0]["test_attacked"]["loss"].get<double>(), f.at("test_attacked").loss);
  EXPECT_EQ(finals[0]["metric"], "bits/byte");
}

TEST_F(LMTrainerTest, WordLevelPerplexity) {
  LMTrainConfig c = tiny("word");
  c.level = "word", c.steps = 3;
  LMTrainer t(c, nullptr);
  EXPECT_EQ(t.tokenizer().vocab_size(), static_cast<int64_t>(kWords.size()) + 3);  // + ".", <unk>, <eol>
  t.train();
  const EvalResult v = t.evaluate("valid", false, 0), va = t.evaluate("valid", true, 0);
  EXPECT_NEAR(v.metric, std::exp(v.loss), 1e-9 * v.metric);
  EXPECT_EQ(va.tokens, v.tokens);  // word level: a swapped word is still one token (<unk>)
  EXPECT_NE(va.loss, v.loss);
}

TEST(LMTrainer, LearningRateSchedule) {
  LMTrainConfig c;
  c.lr = 1.0, c.warmup = 4, c.steps = 14;
  EXPECT_DOUBLE_EQ(lr_at(c, 1), 0.25);
  EXPECT_DOUBLE_EQ(lr_at(c, 4), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(c, 10), 1.0);
  c.cosine = true, c.min_lr = 0.1;
  EXPECT_DOUBLE_EQ(lr_at(c, 4), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(c, 9), 0.55);  // half-way: floor + (lr - floor) / 2
  EXPECT_DOUBLE_EQ(lr_at(c, 14), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(c, 20), 0.1);  // past the end: stays at the floor
}

TEST(LMTrainer, ClipGradNorm) {
  Tensor a = Tensor::zeros({2}).requires_grad_(), b = Tensor::zeros({1}, DType::Float64).requires_grad_();
  Tensor unused = Tensor::zeros({3}).requires_grad_();
  a.set_grad(Tensor::from_vector({3, 0}, {2}));
  b.set_grad(Tensor::from_vector({4}, {1}, DType::Float64));
  EXPECT_DOUBLE_EQ(clip_grad_norm({a, b, unused}, 10.0), 5.0);  // below the limit: unchanged
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{3, 0}));
  EXPECT_DOUBLE_EQ(clip_grad_norm({a, b, unused}, 1.0), 5.0);
  EXPECT_NEAR(a.grad().at({0}), 0.6, 1e-7);
  EXPECT_NEAR(b.grad().at({0}), 0.8, 1e-15);
  EXPECT_NEAR(clip_grad_norm({a, b}, 0.0), 1.0, 1e-7);  // 0: measure only
  b.set_grad(Tensor::from_vector({NAN}, {1}, DType::Float64));
  EXPECT_TRUE(std::isnan(clip_grad_norm({a, b}, 1.0)));
}

TEST(LMTrainer, CommandLine) {
  const LMTrainConfig c = parse_args({"--dim", "64", "--lr", "2e-4", "--router", "smoe", "--cosine", "--out", "x"});
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.lr, 2e-4);
  EXPECT_EQ(c.router, "smoe");
  EXPECT_TRUE(c.cosine);
  EXPECT_EQ(c.out, "x");
  EXPECT_EQ(c.heads, LMTrainConfig().heads);
  EXPECT_MG_ERROR(parse_args({"--dimm", "64"}), "unknown flag --dimm");
  EXPECT_MG_ERROR(parse_args({"--dim"}), "--dim needs a value");
  EXPECT_MG_ERROR(parse_args({"--dim", "6x"}), "--dim expects an integer, got '6x'");
  EXPECT_MG_ERROR(parse_args({"--lr", "fast"}), "--lr expects a number");
  EXPECT_MG_ERROR(parse_args({"64"}), "expected a flag");
  EXPECT_FALSE(parse_args({"--cosine", "--no-cosine"}).cosine);
  EXPECT_MG_ERROR(parse_args({"--no-dim", "3"}), "--no- is for on/off flags");
  EXPECT_NE(usage().find("--expert-hidden N"), std::string::npos);
  EXPECT_NE(usage().find("--cosine / --no-cosine"), std::string::npos);

  EXPECT_MG_ERROR(validate(parse_args({"--device", "tpu"})), "--device must be cpu | cuda, got 'tpu'");
  EXPECT_MG_ERROR(validate(parse_args({"--level", "char"})), "--level must be byte | word, got 'char'");
  EXPECT_MG_ERROR(validate(parse_args({"--arch", "sgsg"})), "--router acmoe needs an AC layer");
  EXPECT_MG_ERROR(validate(parse_args({"--arch", "scsg"})), "no earlier MoE layer");
  EXPECT_MG_ERROR(validate(parse_args({"--dim", "0"})), "--dim must be >= 1");
  EXPECT_MG_ERROR(validate(parse_args({"--dim", "100"})), "multiple of --heads");
  EXPECT_MG_ERROR(validate(parse_args({"--dropout", "1"})), "--dropout must be in [0, 1)");
  EXPECT_MG_ERROR(validate(parse_args({"--lr", "nan"})), "--lr must be a finite number");
  EXPECT_MG_ERROR(validate(parse_args({"--k", "20"})), "--k must be <= --experts");
  EXPECT_MG_ERROR(validate(parse_args({"--resume", "--overwrite"})), "exclude each other");
  EXPECT_MG_ERROR(validate(parse_args({"--dim", "4611686018427387904"})), "--dim must be <= 2^20");
  EXPECT_MG_ERROR(validate(parse_args({"--capacity-factor", "1e300"})), "--capacity-factor must be <= --experts");
  EXPECT_MG_ERROR(validate(parse_args({"--steps", "4611686018427387904"})), "--steps must be <= 2^40");
  validate(parse_args({"--arch", "sgsg", "--router", "smoe"}));
}

TEST(LMTrainer, Recipes) {
  // every shipped recipe parses and validates
  for (const char* name : {"switch-s", "switch-m", "glam-s", "glam-m"}) {
    SCOPED_TRACE(name);
    LMTrainConfig c = parse_args({"--recipe", name});
    validate(c);
    EXPECT_EQ(c.norm, "post");
    EXPECT_EQ(c.c_gate, "xmoe");
    EXPECT_EQ(c.balance_coef, 0.0);
    EXPECT_EQ(c.clip_grad, 0.0);
    EXPECT_FALSE(c.cosine);
  }
  const LMTrainConfig s = parse_args({"--recipe", "switch-s"});
  EXPECT_EQ(s.arch, "sgsgsc");
  EXPECT_EQ(s.dropout, 0.7);
  EXPECT_EQ(s.batch, 96);
  EXPECT_EQ(s.micro_batch, 12);
  EXPECT_EQ(s.ac_rows, "largest-index");
  // flags given with the recipe override it, wherever they stand
  const LMTrainConfig o = parse_args({"--steps", "7", "--recipe", "switch-s", "--dropout", "0.1"});
  EXPECT_EQ(o.steps, 7);
  EXPECT_EQ(o.dropout, 0.1);
  EXPECT_EQ(o.arch, "sgsgsc");

  const std::string dir = (fs::path(::testing::TempDir()) / ("moegrad_recipe_" + std::to_string(::getpid()))).string();
  fs::create_directories(dir);
  write_file(dir + "/mine.recipe", "# a comment\n--dim 32 --heads 4  # trailing comment\n\n--k 1\n");
  const LMTrainConfig m = parse_args({"--recipe", dir + "/mine.recipe"});
  EXPECT_EQ(m.dim, 32);
  EXPECT_EQ(m.heads, 4);
  EXPECT_EQ(m.k, 1);
  write_file(dir + "/nested.recipe", "--recipe switch-s\n");
  EXPECT_MG_ERROR(parse_args({"--recipe", dir + "/nested.recipe"}), "recipes do not nest");
  write_file(dir + "/bad.recipe", "--dim many\n");
  EXPECT_MG_ERROR(parse_args({"--recipe", dir + "/bad.recipe"}), "--dim expects an integer");
  EXPECT_MG_ERROR(parse_args({"--recipe", "no-such-recipe"}), "--recipe no-such-recipe: no such recipe (tried");
  EXPECT_MG_ERROR(parse_args({"--recipe"}), "--recipe needs a name or a path");
  fs::create_directories(dir + "/folder.recipe");
  EXPECT_MG_ERROR(parse_args({"--recipe", dir + "/folder.recipe"}), "no such recipe");
  fs::remove_all(dir);

  EXPECT_MG_ERROR(validate(parse_args({"--batch", "6", "--micro-batch", "4"})), "--micro-batch (4) must divide --batch");
  EXPECT_MG_ERROR(validate(parse_args({"--moe-residual", "double"})), "--moe-residual double needs --norm post");
  EXPECT_MG_ERROR(validate(parse_args({"--c-gate", "wide"})), "--c-gate must be same | linear | cosine | xmoe");
  EXPECT_MG_ERROR(validate(parse_args({"--ac-small-clusters", "x"})), "--ac-small-clusters must be official | neutral");
  EXPECT_MG_ERROR(validate(parse_args({"--embedding-std", "0"})), "--embedding-std must be > 0");
}

// Without AC, dropout or a balance loss (each taken per forward), micro-batches
// only split the sum: the first step's loss and gradient norm equal those of
// one forward over the whole batch (later steps drift apart, since Adam's
// first steps turn rounding-level differences of tiny gradients into ±lr).
TEST_F(LMTrainerTest, MicroBatchesSumToTheBatch) {
  LMTrainConfig c = tiny("whole");
  c.router = "smoe", c.dropout = 0, c.balance_coef = 0, c.steps = 1;
  LMTrainer whole(c, nullptr);
  whole.train();
  c.micro_batch = 2, c.out = root_ + "/micro";
  LMTrainer micro(c, nullptr);
  micro.train();
  const StepRecord &a = whole.history()[0], &b = micro.history()[0];
  EXPECT_NEAR(b.loss, a.loss, 1e-6 * a.loss);
  EXPECT_NEAR(b.grad_norm, a.grad_norm, 1e-5 * a.grad_norm);
}

// The switch-s recipe at a tiny size trains, with the AC diagnostics in the
// train and eval records; the three other arms of the experiment build.
TEST_F(LMTrainerTest, OfficialRecipeArmsAndACDiagnostics) {
  LMTrainConfig c = parse_args({"--recipe", "switch-s"});
  c.data = data_, c.out = root_ + "/acmoe";
  c.dim = 16, c.heads = 2, c.experts = 4, c.expert_hidden = 16, c.seq_len = 16, c.batch = 4, c.micro_batch = 2;
  c.steps = 4, c.warmup = 2, c.log_every = 2, c.eval_every = 4, c.eval_batches = 2, c.checkpoint_every = 4;
  LMTrainer ac(c, nullptr);
  ac.train();
  const std::vector<json> train = records(ac.metrics_path(), "train");
  ASSERT_EQ(train.size(), 2u);
  ASSERT_TRUE(train[0].contains("ac_layers"));
  const json& layer = train[0]["ac_layers"][0];
  EXPECT_EQ(layer["layer"], 5);
  for (const char* key : {"ac_empty", "ac_single", "ac_token_weight", "ac_mean", "ac_std"})
    EXPECT_TRUE(layer.contains(key)) << key;
  EXPECT_LE(layer["ac_empty"].get<double>(), 4.0);
  const json eval = records(ac.metrics_path(), "eval").at(0)["layers"][2];
  EXPECT_TRUE(eval.contains("ac_token_weight"));

  for (const char* arm : {"smoe", "xmoe"}) {
    c.router = arm, c.out = root_ + "/" + arm;
    LMTrainer t(c, nullptr);
    const MoELayer& last = *t.model().layers[5]->moe;
    EXPECT_FALSE(last.config.use_ac) << arm;
    EXPECT_EQ(last.config.gate, std::string(arm) == "xmoe" ? GateKind::Cosine : GateKind::Linear) << arm;
    t.train(1);
    EXPECT_FALSE(records(t.metrics_path(), "train").empty());
  }
  c.router = "acmoe", c.ac_small_clusters = "neutral", c.out = root_ + "/neutral";
  LMTrainer neutral(c, nullptr);
  EXPECT_EQ(neutral.model().layers[5]->moe->config.ac.stats.small_clusters, ACSmallClusters::Neutral);
}

// Under the recipe the arms differ only in the c layer's gate (linear for
// smoe, XMoE's for the others): every other parameter starts the same.
TEST_F(LMTrainerTest, RecipeArmsStartFromTheSameWeights) {
  std::vector<std::vector<std::pair<std::string, Tensor>>> params;
  for (const char* arm : {"smoe", "acmoe", "xmoe"}) {
    LMTrainConfig c = parse_args({"--recipe", "switch-s", "--router", arm});
    c.data = data_, c.out = root_ + "/" + arm;
    c.dim = 16, c.heads = 2, c.experts = 4, c.expert_hidden = 16, c.seq_len = 16, c.batch = 4, c.micro_batch = 2;
    LMTrainer t(c, nullptr);
    params.push_back(t.model().named_parameters());
  }
  for (size_t a = 1; a < params.size(); ++a) {
    std::map<std::string, Tensor> other(params[a].begin(), params[a].end());
    int64_t compared = 0;
    for (const auto& [name, p] : params[0]) {
      if (name.rfind("layers.5.moe.router.", 0) == 0) continue;
      ASSERT_TRUE(other.count(name)) << name;
      EXPECT_EQ(other.at(name).to_vector(), p.to_vector()) << name;
      ++compared;
    }
    EXPECT_GT(compared, 20);
  }
}

// ---- failure modes ----

TEST_F(LMTrainerTest, MissingDataFolder) {
  LMTrainConfig c = tiny("run");
  c.data = root_ + "/no_such_folder";
  EXPECT_MG_ERROR(LMTrainer(c, nullptr), "no_such_folder does not exist");
}

TEST_F(LMTrainerTest, EmptyFile) {
  write_file(data_ + "/valid.txt", "");
  EXPECT_MG_ERROR(LMTrainer(tiny("run"), nullptr), "valid.txt is empty");
}

TEST_F(LMTrainerTest, ResumeNeedsACheckpointAndAFreshRunKeepsOne) {
  LMTrainConfig c = tiny("run");
  c.resume = true;
  EXPECT_MG_ERROR(LMTrainer(c, nullptr), "there is no checkpoint at");
  c.resume = false;
  LMTrainer(c, nullptr).train(5);
  EXPECT_MG_ERROR(LMTrainer(c, nullptr), "already holds a checkpoint");
  c.overwrite = true;
  EXPECT_EQ(LMTrainer(c, nullptr).step(), 0);
}

TEST_F(LMTrainerTest, VocabularyMismatchOnResume) {
  LMTrainConfig c = tiny("run");
  c.level = "word";
  LMTrainer(c, nullptr).train(5);
  write_file(data_ + "/train.txt", sentences(120, 1, {"in", "the", "beginning", "god", "created"}));
  c.resume = true;
  EXPECT_MG_ERROR(LMTrainer(c, nullptr), "vocabulary mismatch");
}

TEST_F(LMTrainerTest, ConfigMismatchOnResume) {
  LMTrainConfig c = tiny("run");
  LMTrainer(c, nullptr).train(5);
  c.resume = true;
  c.dim = 32, c.lr = 1e-3;
  try {
    LMTrainer t(c, nullptr);
    ADD_FAILURE() << "expected a config mismatch";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("config mismatch"), std::string::npos) << m;
    EXPECT_NE(m.find("--dim 16 there, 32 here"), std::string::npos) << m;
    EXPECT_NE(m.find("--lr"), std::string::npos) << m;
  }
  // What only controls the run may change: more steps, another eval schedule.
  c = tiny("run");
  c.resume = true, c.steps = 30, c.eval_every = 7;
  EXPECT_EQ(LMTrainer(c, nullptr).step(), 5);
}

TEST_F(LMTrainerTest, CorruptOrTruncatedCheckpoint) {
  LMTrainConfig c = tiny("run");
  LMTrainer(c, nullptr).train(5);
  c.resume = true;
  const std::string path = c.out + "/checkpoint.safetensors";
  const std::string good = read_file(path);

  // both fail in the reader, which names the file first
  const std::string reader = "load_safetensors: '" + path + "': ";
  write_file(path, good.substr(0, good.size() / 2));
  EXPECT_MG_ERROR(LMTrainer(c, nullptr), reader);
  std::string corrupt = good;
  for (size_t i = 8; i < 40; ++i) corrupt[i] = '#';  // the JSON header
  write_file(path, corrupt);
  EXPECT_MG_ERROR(LMTrainer(c, nullptr), reader);
  // A valid safetensors file that is no train_lm checkpoint, and one without an optimizer state.
  LMTrainer other(tiny("other"), nullptr);
  save_module(path, other.model());
  EXPECT_MG_ERROR(LMTrainer(c, nullptr), "not a train_lm checkpoint");
  write_file(path, good);
  SafetensorsFile f = load_safetensors(path);
  f.tensors.erase("optim.head.weight.m");
  save_safetensors(path, f.tensors, f.metadata);
  EXPECT_MG_ERROR(LMTrainer(c, nullptr), "tensor 'optim.head.weight.m' is missing");
  f.tensors.erase("model.head.weight");
  f.tensors["optim.head.weight.m"] = f.tensors.at("optim.head.weight.v");
  save_safetensors(path, f.tensors, f.metadata);
  EXPECT_MG_ERROR(LMTrainer(c, nullptr), "'head.weight' is missing");
  write_file(path, good);
  EXPECT_EQ(LMTrainer(c, nullptr).step(), 5);
}

// An option nested a million levels deep in the checkpoint's config: the
// mismatch message printed it, and printing recursed once per level until the
// stack overflowed.
TEST_F(LMTrainerTest, DeeplyNestedCheckpointMetadata) {
  LMTrainConfig c = tiny("run");
  LMTrainer(c, nullptr).train(5);
  c.resume = true;
  const std::string path = c.out + "/checkpoint.safetensors";
  SafetensorsFile f = load_safetensors(path);
  const size_t depth = 1000000;
  std::string& config = f.metadata.at("config");
  const size_t at = config.find("\"dim\":16");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, 8, "\"dim\":" + std::string(depth, '[') + std::string(depth, ']'));
  save_safetensors(path, f.tensors, f.metadata);
  EXPECT_MG_ERROR(LMTrainer(c, nullptr), "its 'config' metadata nests deeper than 16 levels");
}

TEST_F(LMTrainerTest, NonFiniteLossStopsAndKeepsTheCheckpoint) {
  LMTrainConfig c = tiny("run");
  LMTrainer t(c, nullptr);
  t.train(5);
  const std::string saved = read_file(t.checkpoint_path());
  t.model().head->weight.data<float>()[0] = NAN;
  EXPECT_MG_ERROR(t.train(), "the loss is nan at step 6");
  EXPECT_EQ(t.step(), 5);
  EXPECT_EQ(read_file(t.checkpoint_path()), saved);
  c.resume = true;
  EXPECT_EQ(LMTrainer(c, nullptr).step(), 5);

  // An absurd learning rate blows the weights up within a few steps.
  LMTrainConfig wild = tiny("wild");
  wild.lr = 1e30, wild.min_lr = 0, wild.warmup = 0, wild.clip_grad = 0;
  LMTrainer w(wild, nullptr);
  EXPECT_MG_ERROR(w.train(), "training stopped");
  EXPECT_LT(w.step(), 5);
}
