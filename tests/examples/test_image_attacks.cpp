// FGSM and PGD (examples/common/image_attacks.h): on a linear classifier the
// input gradient is known in closed form, so FGSM's every pixel move can be
// checked exactly; PGD stays in the ε-ball and in [0, 1] and raises the loss
// at least as much as FGSM on a small trained MLP; the model's mode and
// parameter gradients are left as they were; every bad input is an Error.
// Then the trainer that uses them (examples/common/image_trainer.h): flags,
// and a tiny ViT trained and attacked on synthetic 8x8 images.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "examples/common/image_attacks.h"
#include "examples/common/image_trainer.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "test_helpers.h"

using namespace moegrad;
using data::AttackOptions;
using data::Classifier;

namespace {

// images [B, 1, H, W] -> flattened -> Linear.
Classifier linear_classifier(const std::shared_ptr<Linear>& fc) {
  return {*fc, [fc](const Tensor& x) { return fc->forward(reshape(x, {x.size(0), -1})); }};
}

struct Mlp : Module {
  std::shared_ptr<Linear> fc1, fc2;
  Mlp(int64_t in, int64_t hidden, int64_t classes, const InitOptions& opt) {
    fc1 = register_module("fc1", std::make_shared<Linear>(in, hidden, true, opt));
    fc2 = register_module("fc2", std::make_shared<Linear>(hidden, classes, true, opt));
  }
  Tensor forward(const Tensor& x) const { return fc2->forward(tanh(fc1->forward(reshape(x, {x.size(0), -1})))); }
};

// n images [n, 1, size, size] of 3 classes: a class pattern in [0.2, 0.8] plus noise, clipped to [0, 1].
data::ImageDataset pattern_images(int64_t n, uint64_t seed, int64_t size = 4, DType dtype = DType::Float64) {
  Generator gen(seed);
  const int64_t p = size * size;
  std::vector<double> pattern = Tensor::rand({3, p}, 0.2, 0.8, DType::Float64, &gen).to_vector();
  std::vector<double> noise = Tensor::randn({n, p}, 0.0, 0.15, DType::Float64, &gen).to_vector();
  std::vector<double> pixels(n * p);
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) {
    labels[i] = i % 3;
    for (int64_t j = 0; j < p; ++j) pixels[i * p + j] = std::clamp(pattern[labels[i] * p + j] + noise[i * p + j], 0.0, 1.0);
  }
  return {Tensor::from_vector(pixels, {n, 1, size, size}, dtype), Tensor::from_indices(labels, {n})};
}

// Summed cross-entropy without a graph.
double loss_of(const Classifier& model, const Tensor& x, const Tensor& labels) {
  NoGradGuard no_grad;
  return cross_entropy(model.logits(x), labels).item() * x.size(0);
}

// d(sum of cross-entropies)/dx for logits = x W^T + b, by hand: (softmax - onehot) W, per image.
std::vector<double> linear_input_gradient(const Linear& fc, const Tensor& images, const Tensor& labels) {
  const int64_t B = images.size(0), D = fc.in_features, C = fc.out_features;
  std::vector<double> x = images.to_vector(), W = fc.weight.to_vector(), b = fc.bias.to_vector(), g(B * D, 0.0);
  std::vector<int64_t> y = labels.to_indices();
  for (int64_t i = 0; i < B; ++i) {
    std::vector<double> z(C);
    double zmax = -INFINITY, norm = 0;
    for (int64_t c = 0; c < C; ++c) {
      z[c] = b[c];
      for (int64_t j = 0; j < D; ++j) z[c] += W[c * D + j] * x[i * D + j];
      zmax = std::max(zmax, z[c]);
    }
    for (int64_t c = 0; c < C; ++c) norm += std::exp(z[c] - zmax);
    for (int64_t c = 0; c < C; ++c) {
      const double dz = std::exp(z[c] - zmax) / norm - (c == y[i] ? 1.0 : 0.0);
      for (int64_t j = 0; j < D; ++j) g[i * D + j] += dz * W[c * D + j];
    }
  }
  return g;
}

std::shared_ptr<Linear> linear(int64_t in, int64_t out, uint64_t seed) {
  static Generator gen;
  gen = Generator(seed);
  return std::make_shared<Linear>(in, out, true, InitOptions{DType::Float64, &gen});
}

std::shared_ptr<Mlp> trained_mlp(const data::ImageDataset& d) {
  Generator gen(5);
  auto mlp = std::make_shared<Mlp>(16, 16, 3, InitOptions{DType::Float64, &gen});
  Adam opt(mlp->parameters(), AdamOptions{0.03});
  for (int step = 0; step < 150; ++step) {
    opt.zero_grad();
    cross_entropy(mlp->forward(d.images), d.labels).backward();
    opt.step();
  }
  return mlp;
}

}  // namespace

TEST(ImageAttacks, InputGradientOfLinearClassifierMatchesClosedForm) {
  auto fc = linear(6, 3, 1);
  Tensor images = Tensor::rand({4, 1, 2, 3}, 0.0, 1.0, DType::Float64);
  Tensor labels = Tensor::from_indices({0, 2, 1, 2}, {4});
  data::InputGradient r = data::input_gradient(linear_classifier(fc), images, labels);
  std::vector<double> expected = linear_input_gradient(*fc, images, labels), got = r.grad.to_vector();
  ASSERT_EQ(r.grad.shape(), images.shape());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-12) << "element " << i;
  EXPECT_NEAR(r.loss, loss_of(linear_classifier(fc), images, labels), 1e-12);
}

TEST(ImageAttacks, FgsmMovesEveryPixelByEpsilonAlongTheGradientSign) {
  auto fc = linear(6, 3, 2);
  const double eps = 8.0 / 255;
  // interior pixels, where nothing clips, and pixels on or near the bounds
  Tensor inside = Tensor::rand({5, 1, 2, 3}, 0.1, 0.9, DType::Float64);
  Tensor edges = Tensor::from_vector({0, 1, 0.5, 0.01, 0.99, 0, 1, 1, 0, 0.005, 0.995, 0.5}, {2, 1, 2, 3},
                                     DType::Float64);
  for (const Tensor& images : {inside, edges}) {
    Tensor labels = Tensor::from_indices(std::vector<int64_t>(images.size(0), 1), {images.size(0)});
    std::vector<double> g = linear_input_gradient(*fc, images, labels), x = images.to_vector();
    std::vector<double> adv = data::fgsm(linear_classifier(fc), images, labels, 8).to_vector();
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_GT(std::fabs(g[i]), 1e-9);  // a known, nonzero sign
      const double want = std::clamp(x[i] + (g[i] > 0 ? eps : -eps), 0.0, 1.0);
      EXPECT_NEAR(adv[i], want, 1e-15) << "pixel " << i;
      EXPECT_GE(adv[i], 0.0);
      EXPECT_LE(adv[i], 1.0);
      if (images.same(inside)) {
        EXPECT_NEAR(std::fabs(adv[i] - x[i]), eps, 1e-15);
      }
    }
  }
}

TEST(ImageAttacks, PgdStaysInTheBallAndBeatsFgsmOnATrainedModel) {
  data::ImageDataset d = pattern_images(96, 3);
  auto mlp = trained_mlp(d);
  Classifier model{*mlp, [mlp](const Tensor& x) { return mlp->forward(x); }};
  const double clean = loss_of(model, d.images, d.labels);
  EXPECT_LT(clean / 96, 0.3);  // trained
  const std::vector<double> x = d.images.to_vector();
  for (double epsilon : {2.0, 8.0}) {
    SCOPED_TRACE("epsilon " + std::to_string(epsilon));
    const double eps = epsilon / 255;
    const double fgsm_loss = loss_of(model, data::fgsm(model, d.images, d.labels, epsilon), d.labels);
    for (bool random_start : {false, true}) {
      AttackOptions o;
      o.epsilon = epsilon, o.random_start = random_start, o.seed = 7;
      Tensor adv = data::pgd(model, d.images, d.labels, o);
      std::vector<double> a = adv.to_vector();
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_LE(std::fabs(a[i] - x[i]), eps + 1e-12) << "pixel " << i;
        ASSERT_GE(a[i], 0.0);
        ASSERT_LE(a[i], 1.0);
      }
      const double pgd_loss = loss_of(model, adv, d.labels);
      EXPECT_GT(fgsm_loss, clean);
      EXPECT_GE(pgd_loss, fgsm_loss);
    }
  }
}

TEST(ImageAttacks, OnePgdStepOfFullSizeIsFgsm) {
  data::ImageDataset d = pattern_images(12, 4);
  auto fc = linear(16, 3, 6);
  AttackOptions o;
  o.epsilon = 4, o.steps = 1, o.step_fraction = 1.0;
  EXPECT_EQ(data::pgd(linear_classifier(fc), d.images, d.labels, o).to_vector(),
            data::fgsm(linear_classifier(fc), d.images, d.labels, 4).to_vector());
}

TEST(ImageAttacks, ModelModeAndParameterGradientsAreLeftAsTheyWere) {
  auto fc = linear(6, 3, 8);
  Tensor images = Tensor::rand({3, 1, 2, 3}, 0.0, 1.0, DType::Float64);
  Tensor labels = Tensor::from_indices({0, 1, 2}, {3});
  Tensor dweight = Tensor::full(fc->weight.shape(), 0.5, DType::Float64);
  fc->weight.set_grad(dweight);  // bias has no gradient
  std::vector<bool> seen_training;
  Classifier model{*fc, [&](const Tensor& x) {
                     seen_training.push_back(fc->training());
                     EXPECT_FALSE(fc->weight.requires_grad());
                     return fc->forward(reshape(x, {x.size(0), -1}));
                   }};
  fc->train();
  data::fgsm(model, images, labels, 4);
  {
    NoGradGuard no_grad;  // the attack turns grad mode on for itself
    data::pgd(model, images, labels, AttackOptions{4, 3});
    EXPECT_FALSE(grad_enabled());
  }
  EXPECT_EQ(seen_training, std::vector<bool>(4, false));
  EXPECT_TRUE(fc->training());
  EXPECT_TRUE(fc->weight.requires_grad());
  EXPECT_TRUE(fc->bias.requires_grad());
  EXPECT_EQ(fc->weight.grad().to_vector(), std::vector<double>(18, 0.5));
  EXPECT_FALSE(fc->bias.grad().defined());

  fc->eval();  // restored also after an Error inside the model
  Classifier failing{*fc, [](const Tensor&) -> Tensor { throw Error("model failed"); }};
  EXPECT_MG_ERROR(data::fgsm(failing, images, labels, 4), "model failed");
  EXPECT_FALSE(fc->training());
  EXPECT_TRUE(fc->weight.requires_grad());
  EXPECT_TRUE(grad_enabled());
}

TEST(ImageAttacks, Errors) {
  auto fc = linear(6, 3, 9);
  Classifier model = linear_classifier(fc);
  Tensor images = Tensor::rand({2, 1, 2, 3}, 0.0, 1.0, DType::Float64);
  Tensor labels = Tensor::from_indices({0, 1}, {2});
  EXPECT_MG_ERROR(data::fgsm(model, images, labels, -1), "fgsm: epsilon");
  EXPECT_MG_ERROR(data::fgsm(model, images, labels, NAN), "fgsm: epsilon");
  EXPECT_MG_ERROR(data::pgd(model, images, labels, AttackOptions{-0.5}), "pgd: epsilon");
  EXPECT_MG_ERROR(data::pgd(model, images, labels, AttackOptions{4, 0}), "pgd: steps must be at least 1, got 0");
  EXPECT_MG_ERROR(data::pgd(model, images, labels, AttackOptions{4, 20, 0.0}), "pgd: step_fraction");
  EXPECT_MG_ERROR(data::fgsm(model, reshape(images, {2, 6}), labels, 4), "fgsm: expected float images [B, C, H, W], got [2, 6]");
  EXPECT_MG_ERROR(data::fgsm(model, Tensor(), labels, 4), "fgsm: expected float images");
  EXPECT_MG_ERROR(data::pgd(model, images.to(DType::Int64), labels), "pgd: expected float images");
  EXPECT_MG_ERROR(data::fgsm(model, images, Tensor::from_indices({0, 1, 2}, {3}), 4),
                  "fgsm: expected int64 labels [2], got [3]");
  EXPECT_MG_ERROR(data::pgd(model, images, Tensor::zeros({2}, DType::Float64)), "pgd: expected int64 labels [2]");
  EXPECT_MG_ERROR(data::fgsm(model, images * 2.0, labels, 4), "fgsm: images must lie in [0, 1]");
  EXPECT_MG_ERROR(data::fgsm(model, Tensor::rand({2, 1, 3, 3}, 0, 1, DType::Float64), labels, 4), "Linear");
  Classifier flat{*fc, [fc](const Tensor& x) { return reshape(fc->forward(reshape(x, {x.size(0), -1})), {-1}); }};
  EXPECT_MG_ERROR(data::fgsm(flat, images, labels, 4), "fgsm: expected logits [2, classes], got [6]");
  Classifier constant{*fc, [](const Tensor& x) { return Tensor::zeros({x.size(0), 3}, DType::Float64); }};
  EXPECT_MG_ERROR(data::input_gradient(constant, images, labels), "input_gradient: the logits do not depend");
}

// ---- the trainer ----

namespace {

data::ImageTrainConfig tiny_config(const std::string& moe) {
  data::ImageTrainConfig c = data::parse_image_args(
      {"--moe", moe, "--dim", "8", "--heads", "2", "--expert-hidden", "8", "--experts", "4", "--slots", "1",
       "--batch", "16", "--steps", "48", "--warmup", "5", "--lr", "0.01", "--log-every", "12", "--eval-batch", "30",
       "--eps", "0,16", "--pgd-steps", "3", "--pgd-step", "0.5"});
  data::validate(c);
  return c;
}

}  // namespace

TEST(ImageTrainer, Flags) {
  data::ImageTrainConfig d = data::parse_image_args({});
  EXPECT_EQ(data::effective_arch(d), "sgsc");
  EXPECT_EQ(data::epsilons(d), (std::vector<double>{1, 2, 4}));
  data::ImageTrainConfig c = data::parse_image_args({"--moe", "soft", "--no-ac", "--blocks", "3", "--lr", "3e-4",
                                                     "--eps", "0.5,8", "--pgd-random-start", "--no-cosine"});
  EXPECT_EQ(c.moe, "soft");
  EXPECT_FALSE(c.ac);
  EXPECT_TRUE(c.pgd_random_start);
  EXPECT_FALSE(c.cosine);
  EXPECT_EQ(c.lr, 3e-4);
  EXPECT_EQ(data::effective_arch(c), "sgsgsg");
  EXPECT_EQ(data::epsilons(c), (std::vector<double>{0.5, 8}));
  c.ac = true;
  EXPECT_EQ(data::effective_arch(c), "sgscsc");
  c.arch = "sgsf";
  EXPECT_EQ(data::effective_arch(c), "sgsf");
  ViTConfig v = data::vit_config(data::parse_image_args({"--moe", "soft", "--slots", "2", "--patch", "7"}), 28, 1, 10);
  EXPECT_TRUE(v.block.soft_moe);
  EXPECT_EQ(v.block.soft.slots, 2);
  EXPECT_EQ(v.patch, 7);
  EXPECT_EQ(data::config_to_json(c)["moe"], "soft");
  EXPECT_NE(data::image_usage().find("--ac / --no-ac"), std::string::npos);
}

TEST(ImageTrainer, FlagErrors) {
  EXPECT_MG_ERROR(data::parse_image_args({"--bogus", "1"}), "train_image: unknown flag --bogus");
  EXPECT_MG_ERROR(data::parse_image_args({"dim"}), "train_image: expected a flag --name, got 'dim'");
  EXPECT_MG_ERROR(data::parse_image_args({"--dim"}), "train_image: --dim needs a value");
  EXPECT_MG_ERROR(data::parse_image_args({"--dim", "6x"}), "train_image: --dim expects an integer, got '6x'");
  EXPECT_MG_ERROR(data::parse_image_args({"--lr", ""}), "train_image: --lr expects a number");
  EXPECT_MG_ERROR(data::parse_image_args({"--no-dim"}), "train_image: unknown flag --no-dim");
  auto invalid = [](std::vector<std::string> args, const char* text) {
    EXPECT_MG_ERROR(data::validate(data::parse_image_args(args)), text);
  };
  invalid({"--moe", "dense"}, "train_image: --moe must be topk | soft, got 'dense'");
  invalid({"--attack-grad", "exact"}, "train_image: --attack-grad must be detached | full");
  invalid({"--k", "9"}, "train_image: --k must be <= --experts (8), got 9");
  invalid({"--dim", "30"}, "train_image: --dim (30) must be a multiple of --heads (4)");
  invalid({"--batch", "0"}, "train_image: --batch must be >= 1, got 0");
  invalid({"--train-size", "-1"}, "train_image: --train-size must be >= 0");
  invalid({"--lr", "0"}, "train_image: --lr must be > 0");
  invalid({"--lr", "nan"}, "train_image: --lr must be a finite number");
  invalid({"--eps", "1,-2"}, "train_image: --eps values must be in [0, 255], got -2");
  invalid({"--eps", "1,,2"}, "train_image: --eps expects numbers separated by commas, got '' in '1,,2'");
  invalid({"--eps", "1,2x"}, "train_image: --eps expects numbers separated by commas, got '2x'");
  invalid({"--arch", "scsg"}, "train_image: --arch: architecture 'scsg'");
  invalid({"--pgd-step", "0"}, "train_image: --pgd-step must be > 0");
  data::ImageTrainConfig c = tiny_config("topk");
  Generator gen(1);
  ViT vit(data::vit_config(c, 8, 1, 3), InitOptions{DType::Float32, &gen});
  EXPECT_MG_ERROR(data::train_image_classifier(vit, pattern_images(10, 1, 8, DType::Float32),
                                               pattern_images(10, 2, 8, DType::Float32), c, nullptr, nullptr),
                  "train_image: 10 training images are fewer than one batch of 16");
  const data::ImageDataset ok = pattern_images(32, 1, 8, DType::Float32);
  EXPECT_MG_ERROR(data::train_image_classifier(vit, {ok.images, narrow(ok.labels, 0, 0, 31)}, ok, c, nullptr, nullptr),
                  "train_image_classifier: expected training labels int64 [32], got [31] int64");
  EXPECT_MG_ERROR(data::evaluate_image_classifier(vit, {ok.labels, ok.labels}, c, false),
                  "evaluate_image_classifier: expected test images float [N, C, H, W], got [32]");
  data::ImageTrainConfig bad = c;
  bad.batch = 0;
  EXPECT_MG_ERROR(data::train_image_classifier(vit, ok, ok, bad, nullptr, nullptr), "train_image: --batch must be >= 1");
  c.lr = 1e30, c.warmup = 0, c.clip_grad = 0;
  EXPECT_MG_ERROR(data::train_image_classifier(vit, pattern_images(64, 1, 8, DType::Float32),
                                               pattern_images(10, 2, 8, DType::Float32), c, nullptr, nullptr),
                  "training stopped");
}

TEST(ImageTrainer, TrainsAndEvaluatesATinyViT) {
  const data::ImageDataset all = pattern_images(252, 11, 8, DType::Float32);  // one set of class patterns
  const data::ImageDataset train = data::first_images(all, 192);
  const data::ImageDataset test{narrow(all.images, 0, 192, 60), narrow(all.labels, 0, 192, 60)};
  for (const std::string moe : {"topk", "soft"}) {
    SCOPED_TRACE(moe);
    const data::ImageTrainConfig c = tiny_config(moe);
    Generator gen(3);
    ViT vit(data::vit_config(c, 8, 1, 3), InitOptions{DType::Float32, &gen});
    const std::string path = ::testing::TempDir() + "/moegrad_test_image_metrics.jsonl";
    std::remove(path.c_str());
    data::ImageTrainResult t;
    {
      data::MetricsWriter metrics(path);
      t = data::train_image_classifier(vit, train, test, c, &metrics, nullptr);
    }
    EXPECT_EQ(t.steps, 48);
    EXPECT_EQ(t.images, 48 * 16);
    EXPECT_LT(t.last_loss, 0.5);
    const data::ImageEvalResult e = data::evaluate_image_classifier(vit, test, c, true);
    EXPECT_TRUE(vit.training());  // left as it was
    EXPECT_EQ(e.images, 60);
    EXPECT_GT(e.accuracy, 0.8);  // chance is 1/3
    ASSERT_EQ(e.attacks.size(), 2u);
    EXPECT_EQ(e.attacks[0].fgsm, e.accuracy);  // eps 0 changes no pixel
    EXPECT_EQ(e.attacks[0].pgd, e.accuracy);
    EXPECT_LT(e.attacks[1].fgsm, e.accuracy);
    EXPECT_LE(e.attacks[1].pgd, e.attacks[1].fgsm);
    ASSERT_EQ(e.routing.size(), 2u);
    int64_t slots = 0;
    for (int64_t n : e.routing[0].second.tokens_per_expert) slots += n;
    EXPECT_EQ(slots, 60 * 5 * (moe == "topk" ? 2 : 1));  // 4 patches and the class token per image

    // metrics: a train record every 12 steps, a clean eval after each of the 4 epochs (12 steps each)
    std::ifstream in(path);
    int64_t train_records = 0, eval_records = 0;
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json j = nlohmann::json::parse(line);
      train_records += j["type"] == "train";
      eval_records += j["type"] == "eval";
    }
    EXPECT_EQ(train_records, 4);
    EXPECT_EQ(eval_records, 4);
    std::remove(path.c_str());
  }
}

// --attack-grad full: the attack sees the gradient through W; the model is switched back afterwards.
TEST(ImageTrainer, FullACGradientReachesTheImages) {
  for (const std::string moe : {"topk", "soft"}) {
    SCOPED_TRACE(moe);
    const data::ImageTrainConfig c = tiny_config(moe);
    Generator gen(4);
    ViT vit(data::vit_config(c, 8, 1, 3), InitOptions{DType::Float32, &gen});
    const data::ImageDataset d = pattern_images(8, 13, 8, DType::Float32);
    Classifier model{vit, [&vit](const Tensor& x) { return vit.forward(x).logits; }};
    const std::vector<double> detached = data::input_gradient(model, d.images, d.labels).grad.to_vector();
    EXPECT_EQ(data::set_ac_differentiable(vit, true), 1);
    const std::vector<double> full = data::input_gradient(model, d.images, d.labels).grad.to_vector();
    EXPECT_EQ(data::set_ac_differentiable(vit, false), 1);
    EXPECT_EQ(data::input_gradient(model, d.images, d.labels).grad.to_vector(), detached);
    double diff = 0;
    for (size_t i = 0; i < full.size(); ++i) diff = std::max(diff, std::fabs(full[i] - detached[i]));
    EXPECT_GT(diff, 0.0);
  }
}
