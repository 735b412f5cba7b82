// The image-classification trainer behind examples/train_image: a small ViT
// (moe/vit.h) whose MoE layers are top-k MoE or Soft MoE, each with or without
// AC, trained on an MNIST-style data set (Fashion-MNIST from idx.h) with Adam,
// cross-entropy plus the load-balance loss of the top-k layers, linear warm-up
// and cosine decay; then evaluated on the test images clean and under FGSM and
// PGD (image_attacks.h) at several ε.
//
// The architecture is `blocks` pairs of attention and MoE: the first MoE
// layer is g and, with AC, every later one is c ("sgsc" for 2 blocks), without
// AC all are g ("sgsg"); --arch overrides it. Every option is a ConfigField
// (examples/common/lm_trainer.h): flag --<name>, JSON key <name>, help text,
// parsed by lm::parse_flags.
#pragma once
#include <cstdio>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "examples/common/idx.h"
#include "examples/common/lm_trainer.h"
#include "examples/common/progress.h"
#include "moe/vit.h"

namespace moegrad::data {

struct ImageTrainConfig {
  std::string data = kFashionMnistDir;  // folder with the four IDX files
  // model
  std::string moe = "topk";  // topk | soft
  bool ac = true;            // AC in the MoE layers after the first (--ac / --no-ac)
  std::string arch;          // empty: from blocks and ac
  int64_t blocks = 2, dim = 64, heads = 4, expert_hidden = 128, experts = 8, k = 2, slots = 4, patch = 4;
  // training
  int64_t epochs = 1, steps = 0;  // steps > 0 overrides epochs
  int64_t batch = 64, warmup = 100;
  double lr = 1e-3, min_lr = 0.0, weight_decay = 0.0, clip_grad = 1.0, balance_coef = 0.01;
  bool cosine = true;
  int64_t seed = 0, threads = 0;            // threads 0: OpenMP's default
  std::string device = "cpu";               // cpu | cuda: where the model and each batch live
  int64_t train_size = 0, test_size = 0;    // the first N images; 0: all
  // evaluation
  std::string eps = "1,2,4";                // ε in pixel units /255, comma-separated
  int64_t pgd_steps = 20;
  double pgd_step = 0.15;                   // PGD step as a fraction of ε
  bool pgd_random_start = false;
  int64_t attack_seed = 0;                  // PGD random start
  std::string attack_grad = "detached";     // AC models: detached (W constant, the paper) | full
  int64_t eval_batch = 500, log_every = 50;
  std::string out = "runs/image", load;     // load: a save_module checkpoint to start from
};

std::vector<lm::ConfigField> config_fields(ImageTrainConfig& config);
nlohmann::json config_to_json(const ImageTrainConfig& config);
// lm::parse_flags over the defaults: "--name value", "--flag", "--no-flag".
ImageTrainConfig parse_image_args(const std::vector<std::string>& args);
std::string image_usage();
// Error naming the option when a value is out of range or unknown.
void validate(const ImageTrainConfig& config);
std::string effective_arch(const ImageTrainConfig& config);
std::vector<double> epsilons(const ImageTrainConfig& config);
ViTConfig vit_config(const ImageTrainConfig& config, int64_t image_size, int64_t channels, int64_t classes);

// The first n images (n <= 0 or beyond the end: all), as views.
ImageDataset first_images(const ImageDataset& d, int64_t n);

struct ImageTrainResult {
  int64_t steps = 0, images = 0;
  double seconds = 0, last_loss = 0;  // last_loss: mean cross-entropy of the last log interval
  double images_per_second() const { return seconds > 0 ? images / seconds : 0; }
};

struct AttackAccuracy {
  double epsilon = 0, fgsm = 0, pgd = 0;
};

struct ImageEvalResult {
  int64_t images = 0;
  double accuracy = 0, loss = 0;  // clean top-1 and mean cross-entropy
  std::vector<AttackAccuracy> attacks;
  std::vector<std::pair<int64_t, RoutingStats>> routing;  // clean pass: tokens summed, AC weights over batches
  double seconds = 0;
};

// Both functions below first move `model` to config.device (Module::to), and
// each batch there; the datasets stay on the host.
// Trains `model` on `train` for the configured steps or epochs (shuffled each
// epoch, the last partial batch dropped), writing {"type":"train"} records
// every log_every steps and a clean {"type":"eval"} on `test` after every
// epoch and at the end. Error naming the step when the loss is not finite.
// comm: the ranks training together, data parallel (nullptr: this process
// alone). Each rank takes its slice of every global batch of config.batch
// images (divisible by the ranks), rank 0's initial parameters are broadcast
// and the gradients averaged; only the caller's rank 0 should pass metrics
// and progress, and only a rank with metrics evaluates during training.
ImageTrainResult train_image_classifier(ViT& model, const ImageDataset& train, const ImageDataset& test,
                                        const ImageTrainConfig& config, MetricsWriter* metrics, Progress* progress,
                                        dist::Communicator* comm = nullptr);

// Top-1 accuracy on `test` in batches of eval_batch, clean and, with attacks,
// under FGSM and PGD at every ε (the same batches; AC statistics are per batch).
ImageEvalResult evaluate_image_classifier(ViT& model, const ImageDataset& test, const ImageTrainConfig& config,
                                          bool attacks);
nlohmann::json eval_to_json(const ImageEvalResult& r);

// Switches every AC layer of the model between the detached and the
// differentiable W (the forward is the same); returns how many layers it set.
int64_t set_ac_differentiable(ViT& model, bool on);

}  // namespace moegrad::data
