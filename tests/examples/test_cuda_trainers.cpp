// The example trainers with --device cuda (examples/common/lm_trainer and
// image_trainer), through the code path of the train_lm and train_image
// programs (parse the flags, build, train, evaluate, report): a few steps on
// the GPU agree with the same run on the CPU, the checkpoint written from the
// GPU resumes there bit for bit (every kernel is deterministic) and on the
// CPU, and the attacked evaluation runs. Without a GPU (this machine, CI)
// those skip, and the last test checks the clear Error --device cuda gives.
//
// Tolerance of the CPU comparisons: float32 models over a few Adam steps,
// where the rounding differences of every op feed the next step: 1e-3
// relative on the losses.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "examples/common/image_trainer.h"
#include "examples/common/lm_trainer.h"
#include "test_cuda_helpers.h"

using namespace moegrad;
namespace fs = std::filesystem;

#ifdef MOEGRAD_WITH_CUDA  // the helpers and tests that need the CUDA backend

namespace {

// A folder of tiny train/valid/test files of words from a fixed list, removed at the end.
class CorpusDir {
 public:
  explicit CorpusDir(const std::string& name)
      : root_((fs::path(::testing::TempDir()) / ("moegrad_cuda_trainers_" + std::to_string(::getpid()) + "_" + name))
                  .string()) {
    fs::remove_all(root_);
    fs::create_directories(root_ + "/data");
    const std::vector<std::string> words = {"the", "lord", "said", "unto", "moses", "and", "land", "of",
                                            "egypt", "people", "went", "house", "king", "david", "city"};
    for (auto [file, lines, seed] : {std::tuple{"train", 80, 1}, {"valid", 12, 2}, {"test", 12, 3}}) {
      Generator gen(seed);
      std::ofstream out(root_ + "/data/" + file + ".txt");
      for (int i = 0; i < lines; ++i) {
        for (int w = 0; w < 8; ++w) out << (w ? " " : "") << words[random_bits(gen.seed(), gen.take(1)) % words.size()];
        out << " .\n";
      }
    }
  }
  ~CorpusDir() { fs::remove_all(root_); }
  std::string data() const { return root_ + "/data"; }
  std::string out(const std::string& run) const { return root_ + "/" + run; }

 private:
  std::string root_;
};

// train_lm's flags for a tiny AC model.
std::vector<std::string> lm_flags(const CorpusDir& dir, const std::string& run, const std::string& device,
                                  const std::string& router) {
  return {"--data", dir.data(), "--out", dir.out(run), "--device", device, "--router", router, "--arch", "sgsc",
          "--dim", "16", "--heads", "2", "--experts", "4", "--k", "2", "--expert-hidden", "16", "--ffn-hidden", "16",
          "--seq-len", "16", "--batch", "4", "--steps", "6", "--warmup", "2", "--log-every", "1", "--eval-every", "3",
          "--eval-batches", "1", "--checkpoint-every", "3", "--lr", "3e-3", "--optimizer", "adamw"};
}

// n images [n, 1, 8, 8] of 3 classes: a class pattern plus noise, in [0, 1].
data::ImageDataset pattern_images(int64_t n, uint64_t seed) {
  Generator gen(seed);
  const Tensor pattern = Tensor::rand({3, 64}, 0.2, 0.8, DType::Float32, &gen);
  const Tensor noise = Tensor::randn({n, 64}, 0.0, 0.1, DType::Float32, &gen);
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = i % 3;
  const Tensor y = Tensor::from_indices(labels, {n});
  const Tensor x = clamp(add(index_select(pattern, 0, y), noise), 0.0, 1.0);
  return {contiguous(reshape(x, {n, 1, 8, 8})), y};
}

}  // namespace

TEST(CudaTrainers, TrainLmOnTheGpuMatchesTheCpuAndResumes) {
  MG_SKIP_WITHOUT_CUDA();
  const CorpusDir dir("lm");
  for (const std::string router : {"smoe", "acmoe"}) {
    SCOPED_TRACE(router);
    lm::LMTrainer cpu(lm::parse_args(lm_flags(dir, router + "_cpu", "cpu", router)), nullptr);
    lm::LMTrainer gpu(lm::parse_args(lm_flags(dir, router + "_gpu", "cuda", router)), nullptr);
    EXPECT_EQ(gpu.model().device(), Device::cuda(0));
    cpu.train();
    gpu.train();
    ASSERT_EQ(gpu.history().size(), 6u);
    for (size_t i = 0; i < 6; ++i) {
      EXPECT_NEAR(gpu.history()[i].loss, cpu.history()[i].loss, 1e-3 * cpu.history()[i].loss) << "step " << i + 1;
      EXPECT_NEAR(gpu.history()[i].grad_norm, cpu.history()[i].grad_norm, 1e-3 * cpu.history()[i].grad_norm);
    }
    const lm::FinalReport fc = cpu.final_report(), fg = gpu.final_report();
    EXPECT_NEAR(fg.at("valid").loss, fc.at("valid").loss, 1e-3 * fc.at("valid").loss);
    EXPECT_NEAR(fg.at("test_attacked").loss, fc.at("test_attacked").loss, 1e-3 * fc.at("test_attacked").loss);
    EXPECT_GT(fg.tokens_per_second, 0);
    EXPECT_TRUE(fs::exists(gpu.checkpoint_path()));

    // Interrupted after step 4 (checkpoint of step 3), resumed on the GPU: the same bits as the whole GPU run.
    std::vector<std::string> flags = lm_flags(dir, router + "_resumed", "cuda", router);
    { lm::LMTrainer first(lm::parse_args(flags), nullptr); first.train(4); }
    flags.push_back("--resume");
    lm::LMTrainer resumed(lm::parse_args(flags), nullptr);
    ASSERT_EQ(resumed.step(), 3);
    EXPECT_EQ(resumed.model().device(), Device::cuda(0));
    resumed.train();
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(resumed.history()[i].loss, gpu.history()[3 + i].loss) << "step " << 4 + i;
    const auto pa = gpu.model().named_parameters(), pb = resumed.model().named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_EQ(pa[i].second.to_vector(), pb[i].second.to_vector()) << pa[i].first;

    // The GPU's checkpoint resumes on the CPU (--device may change on resume).
    std::vector<std::string> on_cpu = lm_flags(dir, router + "_gpu", "cpu", router);
    on_cpu.push_back("--resume");
    lm::LMTrainer moved(lm::parse_args(on_cpu), nullptr);
    EXPECT_EQ(moved.step(), 6);
    EXPECT_EQ(moved.model().device(), Device::cpu());
    for (size_t i = 0; i < pa.size(); ++i)
      EXPECT_EQ(moved.model().named_parameters()[i].second.to_vector(), pa[i].second.to_vector()) << pa[i].first;
  }
}

TEST(CudaTrainers, TrainImageOnTheGpuMatchesTheCpu) {
  MG_SKIP_WITHOUT_CUDA();
  const data::ImageDataset all = pattern_images(120, 5);
  const data::ImageDataset train = data::first_images(all, 96);
  const data::ImageDataset test{narrow(all.images, 0, 96, 24), narrow(all.labels, 0, 96, 24)};
  for (const std::string moe : {"topk", "soft"}) {
    SCOPED_TRACE(moe);
    data::ImageTrainResult t[2];
    data::ImageEvalResult e[2];
    for (int d = 0; d < 2; ++d) {
      const data::ImageTrainConfig c = data::parse_image_args(
          {"--device", d ? "cuda" : "cpu", "--moe", moe, "--dim", "8", "--heads", "2", "--expert-hidden", "8",
           "--experts", "4", "--slots", "1", "--batch", "16", "--steps", "8", "--warmup", "2", "--lr", "0.01",
           "--eval-batch", "12", "--eps", "0,8", "--pgd-steps", "2", "--pgd-random-start"});
      Generator gen(3);
      ViT vit(data::vit_config(c, 8, 1, 3), InitOptions{DType::Float32, &gen});
      t[d] = data::train_image_classifier(vit, train, test, c, nullptr, nullptr);
      EXPECT_EQ(vit.device(), d ? Device::cuda(0) : Device::cpu());
      e[d] = data::evaluate_image_classifier(vit, test, c, true);
    }
    EXPECT_EQ(t[1].steps, 8);
    EXPECT_GT(t[1].images_per_second(), 0);
    EXPECT_NEAR(t[1].last_loss, t[0].last_loss, 1e-3 * t[0].last_loss);
    EXPECT_NEAR(e[1].loss, e[0].loss, 1e-3 * e[0].loss);
    ASSERT_EQ(e[1].attacks.size(), 2u);
    EXPECT_EQ(e[1].attacks[0].fgsm, e[1].accuracy);  // eps 0 changes no pixel
    // one image in 24 may flip on a rounding difference
    EXPECT_NEAR(e[1].accuracy, e[0].accuracy, 1.5 / 24);
    EXPECT_NEAR(e[1].attacks[1].pgd, e[0].attacks[1].pgd, 1.5 / 24);
  }
}

#endif  // MOEGRAD_WITH_CUDA

TEST(WithoutCudaDevice, TrainersDeviceCudaIsAClearError) {
  MG_SKIP_WITH_CUDA();
  const std::string why = cuda_backend() ? "no CUDA device visible" : "no CUDA backend in this build";
  EXPECT_MG_ERROR(lm::validate(lm::parse_args({"--device", "cuda"})), "train_lm: --device cuda: " + why);
  EXPECT_MG_ERROR(lm::LMTrainer(lm::parse_args({"--device", "cuda", "--data", "no_such_folder"}), nullptr),
                  "train_lm: --device cuda: " + why);  // before any data is read
  EXPECT_MG_ERROR(data::validate(data::parse_image_args({"--device", "cuda"})), "train_image: --device cuda: " + why);
  EXPECT_MG_ERROR(data::validate(data::parse_image_args({"--device", "gpu"})),
                  "train_image: --device must be cpu | cuda, got 'gpu'");
  EXPECT_NE(lm::usage().find("--device S"), std::string::npos);
  EXPECT_NE(data::image_usage().find("cpu | cuda"), std::string::npos);
}
