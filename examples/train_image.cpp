// examples/train_image: trains a small ViT whose MoE layers are top-k MoE or
// Soft MoE, with or without AC, on Fashion-MNIST, then reports its clean top-1
// accuracy and its accuracy under FGSM and PGD on the test images (the first
// --test-size of them). The options and the training loop are in
// examples/common/image_trainer.h; `train_image --help` lists every flag.
//
//   train_image --moe topk --ac --train-size 20000 --test-size 1000 --epochs 2
//   train_image ... --device cuda   on the GPU (a CUDA build with a visible GPU)
//
// Writes <out>/metrics.jsonl (a config record, train and eval records, a
// final record with the attacked accuracies) and <out>/model.safetensors
// (save_module; the config is in its metadata).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "dist/communicator.h"
#include "examples/common/image_trainer.h"
#include "nn/checkpoint.h"

using namespace moegrad;
using namespace moegrad::data;
namespace fs = std::filesystem;

namespace {

void print_report(const ImageTrainConfig& c, const ImageTrainResult& t, const ImageEvalResult& e) {
  if (t.steps > 0)
    std::printf("trained %lld steps in %s: %.1f images/s; loss of the last %lld steps %.4f\n", (long long)t.steps,
                format_duration(t.seconds).c_str(), t.images_per_second(),
                (long long)std::min(t.steps, c.log_every), t.last_loss);
  std::printf("test, first %lld images: clean accuracy %.2f%% (loss %.4f); attacks in %s\n", (long long)e.images,
              100 * e.accuracy, e.loss, format_duration(e.seconds).c_str());
  if (e.attacks.empty()) return;
  std::printf("  eps/255   FGSM      PGD-%lld%s\n", (long long)c.pgd_steps, c.pgd_random_start ? " (random start)" : "");
  for (const AttackAccuracy& a : e.attacks)
    std::printf("  %-8g  %6.2f%%   %6.2f%%\n", a.epsilon, 100 * a.fgsm, 100 * a.pgd);
}

int run(const std::vector<std::string>& args) {
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      std::printf("usage: train_image [flags]\n%s", image_usage().c_str());
      return 0;
    }
  // One process only: under mpirun every rank would train alone and write the same files
  MG_CHECK(dist::launched_world_size() == 1, "train_image trains in one process; this is one of ",
           dist::launched_world_size(), " that a launcher started (train_lm trains data parallel)");
  const ImageTrainConfig c = parse_image_args(args);
  validate(c);
#ifdef _OPENMP
  if (c.threads > 0) omp_set_num_threads(static_cast<int>(c.threads));
#endif
  const FashionMnist data = load_fashion_mnist(find_fashion_mnist(c.data));
  const ImageDataset train = first_images(data.train, c.train_size), test = first_images(data.test, c.test_size);
  const ViTConfig vc = vit_config(c, train.images.size(2), train.images.size(1), 10);
  // The same seed gives every model the same initial weights where they share parameters.
  Generator init_gen(random_bits(static_cast<uint64_t>(c.seed), 0));
  ViT model(vc, InitOptions{DType::Float32, &init_gen});
  if (!c.load.empty()) load_module(c.load, model);

  std::error_code ec;
  fs::create_directories(c.out, ec);
  MG_CHECK(fs::is_directory(c.out, ec), "train_image: cannot create the output folder ", c.out);
  const std::string metrics_path = (fs::path(c.out) / "metrics.jsonl").string();
  const std::string model_path = (fs::path(c.out) / "model.safetensors").string();
  fs::remove(metrics_path, ec);  // a fresh record per run
  MetricsWriter metrics(metrics_path);
  nlohmann::json config = config_to_json(c);
  config["effective_arch"] = vc.arch;
  config["parameters"] = model.num_parameters();
  metrics.write({{"type", "config"}, {"config", config}});
  std::printf("train_image: %s MoE %s AC, arch %s, %lld parameters on %s; %lld training and %lld test images\n",
              c.moe.c_str(), vc.arch.find('c') != std::string::npos ? "with" : "without", vc.arch.c_str(),
              (long long)model.num_parameters(), c.device.c_str(), (long long)train.images.size(0),
              (long long)test.images.size(0));
  std::fflush(stdout);

  ImageTrainResult t;
  if (c.steps > 0 || c.epochs > 0) {
    ProgressOptions po;
    po.total_steps = c.steps > 0 ? c.steps : c.epochs * (train.images.size(0) / c.batch);
    po.every = c.log_every, po.unit = "img";
    Progress progress(po);
    t = train_image_classifier(model, train, test, c, &metrics, &progress);
    progress.finish();
    save_module(model_path, model, {{"config", config.dump()}});
  }
  const ImageEvalResult e = evaluate_image_classifier(model, test, c, true);
  nlohmann::json final_record = eval_to_json(e);
  final_record["type"] = "final", final_record["steps"] = t.steps;
  final_record["train_seconds"] = t.seconds, final_record["images_per_s"] = t.images_per_second();
  final_record["attack_grad"] = c.attack_grad;
  metrics.write(final_record);
  metrics.sync();
  print_report(c, t, e);
  std::printf("wrote %s%s\n", metrics_path.c_str(), t.steps > 0 ? (" and " + model_path).c_str() : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
