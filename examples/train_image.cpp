// examples/train_image: trains a small ViT whose MoE layers are top-k MoE or
// Soft MoE, with or without AC, on Fashion-MNIST, then reports its clean top-1
// accuracy and its accuracy under FGSM and PGD on the test images (the first
// --test-size of them). The options and the training loop are in
// examples/common/image_trainer.h; `train_image --help` lists every flag.
//
//   train_image --moe topk --ac --train-size 20000 --test-size 1000 --epochs 2
//   train_image ... --device cuda   on the GPU (a CUDA build with a visible GPU)
//   mpirun -np 2 train_image ...    data parallel over 2 ranks (a build with MPI;
//                                   --batch divisible by the ranks; rank 0 writes)
//
// Writes <out>/metrics.jsonl (a config record, train and eval records, a
// final record with the attacked accuracies) and <out>/model.safetensors
// (save_module; the config is in its metadata).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
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

// Everything a run needs before training: the options, the data, the model
// and (on rank 0) the output folder and the metrics.
struct Setup {
  ImageTrainConfig c;
  ImageDataset train, test;
  nlohmann::json config;
  std::unique_ptr<ViT> model;
  std::unique_ptr<MetricsWriter> metrics;  // rank 0's
  std::string metrics_path, model_path;
};

Setup set_up(const std::vector<std::string>& args, bool rank0) {
  Setup s;
  s.c = parse_image_args(args);
  const ImageTrainConfig& c = s.c;
  validate(c);
#ifdef _OPENMP
  if (c.threads > 0) omp_set_num_threads(static_cast<int>(c.threads));
#endif
  const FashionMnist data = load_fashion_mnist(find_fashion_mnist(c.data));
  s.train = first_images(data.train, c.train_size), s.test = first_images(data.test, c.test_size);
  const ViTConfig vc = vit_config(c, s.train.images.size(2), s.train.images.size(1), 10);
  // The same seed gives every model the same initial weights where they share parameters.
  Generator init_gen(random_bits(static_cast<uint64_t>(c.seed), 0));
  s.model = std::make_unique<ViT>(vc, InitOptions{DType::Float32, &init_gen});
  if (!c.load.empty()) load_module(c.load, *s.model);
  s.config = config_to_json(c);
  s.config["effective_arch"] = vc.arch;
  s.config["parameters"] = s.model->num_parameters();
  s.metrics_path = (fs::path(c.out) / "metrics.jsonl").string();
  s.model_path = (fs::path(c.out) / "model.safetensors").string();
  if (!rank0) return s;  // rank 0 alone writes
  std::error_code ec;
  fs::create_directories(c.out, ec);
  MG_CHECK(fs::is_directory(c.out, ec), "train_image: cannot create the output folder ", c.out);
  fs::remove(s.metrics_path, ec);  // a fresh record per run
  s.metrics = std::make_unique<MetricsWriter>(s.metrics_path);
  s.metrics->write({{"type", "config"}, {"config", s.config}});
  std::printf("train_image: %s MoE %s AC, arch %s, %lld parameters on %s; %lld training and %lld test images\n",
              c.moe.c_str(), vc.arch.find('c') != std::string::npos ? "with" : "without", vc.arch.c_str(),
              (long long)s.model->num_parameters(), c.device.c_str(), (long long)s.train.images.size(0),
              (long long)s.test.images.size(0));
  std::fflush(stdout);
  return s;
}

// Trains (data parallel over comm's ranks), then on rank 0 saves the model,
// evaluates it under the attacks and prints the report.
void train_and_report(Setup& s, dist::Communicator& comm) {
  const ImageTrainConfig& c = s.c;
  const bool rank0 = comm.rank() == 0;
  ImageTrainResult t;
  if (c.steps > 0 || c.epochs > 0) {
    ProgressOptions po;
    po.total_steps = c.steps > 0 ? c.steps : c.epochs * (s.train.images.size(0) / c.batch);
    po.every = c.log_every, po.unit = "img";
    std::unique_ptr<Progress> progress = rank0 ? std::make_unique<Progress>(po) : nullptr;
    t = train_image_classifier(*s.model, s.train, s.test, c, s.metrics.get(), progress.get(), &comm);
    if (progress) progress->finish();
    if (rank0) save_module(s.model_path, *s.model, {{"config", s.config.dump()}});
  }
  if (!rank0) return;
  const ImageEvalResult e = evaluate_image_classifier(*s.model, s.test, c, true);
  nlohmann::json final_record = eval_to_json(e);
  final_record["type"] = "final", final_record["steps"] = t.steps;
  final_record["train_seconds"] = t.seconds, final_record["images_per_s"] = t.images_per_second();
  final_record["attack_grad"] = c.attack_grad;
  final_record["ranks"] = comm.world_size();
  s.metrics->write(final_record);
  s.metrics->sync();
  print_report(c, t, e);
  std::printf("wrote %s%s\n", s.metrics_path.c_str(), t.steps > 0 ? (" and " + s.model_path).c_str() : "");
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      std::printf("usage: train_image [flags]\n%s", image_usage().c_str());
      return 0;
    }
  dist::CommPtr comm;
  Setup setup;
  try {  // a setup error on any rank ends every rank with its message
    comm = dist::world();
    dist::run_on_all_or_fail(*comm, [&] { setup = set_up(args, comm->rank() == 0); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  try {
    train_and_report(setup, *comm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::fflush(stderr);
    if (comm->world_size() > 1) comm->abort_all(1);  // the others may wait in a collective
    return 1;
  }
  return 0;
}
