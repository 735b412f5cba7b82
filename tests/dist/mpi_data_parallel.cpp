// Data parallelism under mpirun: 2 ranks with batch B/2 each train a small
// float64 MoE language model for some Adam steps and end where one process
// with batch B ends: the same losses and the same parameters to 1e-12
// relative. Each rank also trains the one-process reference itself. The same
// for train_image's trainer (a float64 ViT, each rank half of every batch).
#include "dist/data_parallel.h"
#include "examples/common/image_trainer.h"
#include "moe/transformer_lm.h"
#include "nn/optim.h"
#include "test_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {
constexpr int64_t kBatch = 4, kLen = 6, kVocab = 11, kSteps = 20;

std::shared_ptr<TransformerLM> small_lm(uint64_t seed) {
  LMConfig c;
  c.vocab = kVocab, c.max_len = kLen, c.arch = "sgsg";
  c.block.dim = 8, c.block.heads = 2, c.block.ffn_hidden = 16;
  c.block.moe.hidden = 12, c.block.moe.experts = 4, c.block.moe.k = 2;
  // no attention biases: the key bias has a zero gradient in exact arithmetic,
  // and Adam would scale the rounding left in it up to steps of size lr
  c.block.attention_bias = false;
  Generator gen(seed);
  return std::make_shared<TransformerLM>(c, InitOptions{DType::Float64, &gen});
}

// The global batch of a step: the same on every rank (tokens, next tokens).
std::pair<Tensor, Tensor> global_batch(int64_t step) {
  Generator gen(100 + static_cast<uint64_t>(step));
  std::vector<int64_t> ids, targets;
  const std::vector<double> r = Tensor::rand({kBatch * (kLen + 1)}, 0, kVocab, DType::Float64, &gen).to_vector();
  for (int64_t b = 0; b < kBatch; ++b)
    for (int64_t t = 0; t < kLen; ++t) {
      ids.push_back(static_cast<int64_t>(r[b * (kLen + 1) + t]));
      targets.push_back(static_cast<int64_t>(r[b * (kLen + 1) + t + 1]));
    }
  return {Tensor::from_indices(ids, {kBatch, kLen}), Tensor::from_indices(targets, {kBatch, kLen})};
}

// Trains for kSteps; with comm, on this rank's slice and averaged gradients. Returns the losses.
std::vector<double> train(TransformerLM& model, dist::Communicator* comm) {
  Adam adam(model.parameters(), AdamOptions{1e-2, 0.9, 0.999, 1e-8, 0.0});
  if (comm) dist::broadcast_parameters(*comm, model.parameters());
  std::vector<double> losses;
  for (int64_t step = 0; step < kSteps; ++step) {
    auto [ids, targets] = global_batch(step);
    if (comm) {
      const auto [first, rows] = dist::local_rows(*comm, kBatch, "batch");
      ids = narrow(ids, 0, first, rows), targets = narrow(targets, 0, first, rows);
    }
    adam.zero_grad();
    const LMOutput out = model.forward(ids, targets);
    out.loss.backward();
    double loss = out.loss.item();
    if (comm) {
      dist::average_gradients(*comm, model.parameters());
      loss = dist::average_over_ranks(*comm, loss);
    }
    adam.step();
    losses.push_back(loss);
  }
  return losses;
}

void expect_relative(const std::vector<double>& got, const std::vector<double>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], rel * scale) << "element " << i;
}
}  // namespace

TEST(MpiDataParallel, TwoRanksEqualOneProcessWithTheWholeBatch) {
  dist::CommPtr comm = dist::world();
  ASSERT_EQ(comm->world_size(), 2);
  // rank 1 starts from other weights: the broadcast must make them rank 0's
  auto parallel = small_lm(comm->rank() == 0 ? 7 : 8);
  auto single = small_lm(7);
  const std::vector<double> parallel_losses = train(*parallel, comm.get());
  const std::vector<double> single_losses = train(*single, nullptr);
  expect_relative(parallel_losses, single_losses, 1e-12);
  const auto p = parallel->named_parameters(), s = single->named_parameters();
  ASSERT_EQ(p.size(), s.size());
  for (size_t i = 0; i < p.size(); ++i) {
    SCOPED_TRACE(p[i].first);
    expect_relative(values(p[i].second), values(s[i].second), 1e-12);
  }
  // and the parameters moved: the test compares trained weights
  EXPECT_GT(std::abs(values(p[0].second)[0] - values(small_lm(7)->named_parameters()[0].second)[0]), 1e-6);
}

TEST(MpiDataParallel, BatchNotDivisibleByRanksIsAnError) {
  dist::CommPtr comm = dist::world();
  EXPECT_MG_ERROR(dist::local_rows(*comm, 3, "--batch"), "--batch 3 is not divisible by the number of ranks 2");
}

TEST(MpiDataParallel, ImageTrainerOnTwoRanksEqualsOneProcess) {
  dist::CommPtr comm = dist::world();
  Generator data_gen(5);
  const int64_t n = 48;
  const Tensor images = Tensor::rand({n, 1, 8, 8}, 0, 1, DType::Float64, &data_gen);
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = (i * 5 + i / 7) % 3;
  const data::ImageDataset train{images, Tensor::from_indices(labels, {n})};
  data::ImageTrainConfig c = data::parse_image_args({"--moe", "topk", "--no-ac", "--dim", "8", "--heads", "2",
                                                     "--expert-hidden", "8", "--experts", "4", "--batch", "8",
                                                     "--steps", "6", "--warmup", "2", "--lr", "0.01",
                                                     "--balance-coef", "0", "--threads", "1"});
  auto trained = [&](dist::Communicator* ranks) {
    Generator gen(3);
    auto vit = std::make_shared<ViT>(data::vit_config(c, 8, 1, 3), InitOptions{DType::Float64, &gen});
    data::train_image_classifier(*vit, train, train, c, nullptr, nullptr, ranks);
    return vit;
  };
  const auto parallel = trained(comm.get()), single = trained(nullptr);
  const auto p = parallel->named_parameters(), s = single->named_parameters();
  ASSERT_EQ(p.size(), s.size());
  for (size_t i = 0; i < p.size(); ++i) {
    SCOPED_TRACE(p[i].first);
    expect_near(values(p[i].second), values(s[i].second), 1e-10);
  }
  c.batch = 7;
  EXPECT_MG_ERROR(trained(comm.get()), "train_image: --batch 7 is not divisible by the number of ranks 2");
}
