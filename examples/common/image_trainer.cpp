// The image-classification trainer (see image_trainer.h): options, the ViT,
// the training loop and the clean and attacked evaluation.
#include "examples/common/image_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/node.h"
#include "dist/data_parallel.h"
#include "examples/common/image_attacks.h"

namespace moegrad::data {
using nlohmann::json;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Linear warm-up over `warmup` steps, then constant or a cosine decay to min_lr at `total`: lm::lr_at's schedule.
double lr_at(const ImageTrainConfig& c, int64_t step, int64_t total) {
  lm::LMTrainConfig schedule;
  schedule.lr = c.lr, schedule.min_lr = c.min_lr, schedule.warmup = c.warmup, schedule.cosine = c.cosine;
  schedule.steps = total;
  return lm::lr_at(schedule, step);
}

// Fisher-Yates over [0, n) with the counter-based generator.
std::vector<int64_t> shuffled(int64_t n, Generator& gen) {
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(order[i], order[random_bits(gen.seed(), gen.take(1)) % static_cast<uint64_t>(i + 1)]);
  return order;
}

// images float [N, C, H, W], labels int64 [N].
void check_dataset(const ImageDataset& d, const char* fn, const char* what) {
  MG_CHECK(d.images.defined() && d.images.dim() == 4 && is_floating(d.images.dtype()), fn, ": expected ", what,
           " images float [N, C, H, W], got ", d.images.defined() ? shape_str(d.images.shape()) : "undefined");
  MG_CHECK(d.labels.defined() && d.labels.dtype() == DType::Int64 && d.labels.dim() == 1 &&
               d.labels.size(0) == d.images.size(0),
           fn, ": expected ", what, " labels int64 [", d.images.size(0), "], got ",
           d.labels.defined() ? shape_str(d.labels.shape()) + " " + dtype_name(d.labels.dtype()) : "undefined");
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const std::vector<int64_t> pred = argmax(logits, 1).to_indices(), y = labels.to_indices();
  int64_t n = 0;
  for (size_t i = 0; i < y.size(); ++i) n += pred[i] == y[i];
  return n;
}

}  // namespace

// ---- options ----

std::vector<lm::ConfigField> config_fields(ImageTrainConfig& c) {
  return {
      {"data", &c.data, "folder with the Fashion-MNIST IDX files (tools/find_fashion_mnist.sh prints it)", true},
      {"moe", &c.moe, "MoE layers: topk | soft", false},
      {"ac", &c.ac, "AC in every MoE layer after the first (--no-ac: none)", false},
      {"arch", &c.arch, "architecture string (s, g, c, f); empty: from --blocks and --ac", false},
      {"blocks", &c.blocks, "attention + MoE pairs", false},
      {"dim", &c.dim, "model width", false},
      {"heads", &c.heads, "attention heads", false},
      {"expert-hidden", &c.expert_hidden, "hidden width of each expert", false},
      {"experts", &c.experts, "experts per MoE layer", false},
      {"k", &c.k, "top-k: experts per token", false},
      {"slots", &c.slots, "Soft MoE: slots per expert", false},
      {"patch", &c.patch, "patch size (divides the image size)", false},
      {"epochs", &c.epochs, "passes over the training images", true},
      {"steps", &c.steps, "training steps; > 0 overrides --epochs", true},
      {"batch", &c.batch, "images per training batch", false},
      {"warmup", &c.warmup, "linear warm-up steps", false},
      {"lr", &c.lr, "peak learning rate (Adam)", false},
      {"min-lr", &c.min_lr, "cosine decay: the learning rate at the last step", false},
      {"weight-decay", &c.weight_decay, "Adam weight decay (L2 in the gradient)", false},
      {"clip-grad", &c.clip_grad, "max global gradient norm; 0: no clipping", false},
      {"balance-coef", &c.balance_coef, "weight of the top-k load-balance loss", false},
      {"cosine", &c.cosine, "cosine decay after warm-up (--no-cosine: constant)", false},
      {"seed", &c.seed, "seed of the initialisation and the batch order", false},
      {"threads", &c.threads, "OpenMP threads; 0: OpenMP's default", true},
      {"device", &c.device, "cpu | cuda (needs a CUDA build and a visible GPU)", true},
      {"train-size", &c.train_size, "train on the first N training images; 0: all", true},
      {"test-size", &c.test_size, "evaluate on the first N test images; 0: all", true},
      {"eps", &c.eps, "attack budgets in pixel units /255, comma-separated; empty: no attacks", true},
      {"pgd-steps", &c.pgd_steps, "PGD iterations", true},
      {"pgd-step", &c.pgd_step, "PGD step size as a fraction of eps", true},
      {"pgd-random-start", &c.pgd_random_start, "PGD starts from a random point of the eps-ball", true},
      {"attack-seed", &c.attack_seed, "seed of the PGD random start", true},
      {"attack-grad", &c.attack_grad, "AC models: detached (W constant, as in the paper) | full", true},
      {"eval-batch", &c.eval_batch, "test images per evaluation batch (AC statistics are per batch)", true},
      {"log-every", &c.log_every, "steps between metric records (and plain progress lines)", true},
      {"out", &c.out, "output folder (metrics.jsonl, model.safetensors)", true},
      {"load", &c.load, "start from this model checkpoint (with --epochs 0: evaluate only)", true},
  };
}

json config_to_json(const ImageTrainConfig& config) {
  ImageTrainConfig c = config;
  return lm::fields_to_json(config_fields(c));
}

ImageTrainConfig parse_image_args(const std::vector<std::string>& args) {
  ImageTrainConfig c;
  lm::parse_flags(config_fields(c), args, "train_image");
  return c;
}

std::string image_usage() {
  ImageTrainConfig c;
  return lm::flags_usage(config_fields(c));
}

std::string effective_arch(const ImageTrainConfig& c) {
  if (!c.arch.empty()) return c.arch;
  std::string arch;
  for (int64_t b = 0; b < c.blocks; ++b) arch += b > 0 && c.ac ? "sc" : "sg";
  return arch;
}

std::vector<double> epsilons(const ImageTrainConfig& c) {
  std::vector<double> out;
  std::stringstream in(c.eps);
  for (std::string item; std::getline(in, item, ',');) {
    size_t used = 0;
    double e = NAN;
    try {
      e = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MG_CHECK(!item.empty() && used == item.size(), "train_image: --eps expects numbers separated by commas, got '",
             item, "' in '", c.eps, "'");
    MG_CHECK(std::isfinite(e) && e >= 0 && e <= 255, "train_image: --eps values must be in [0, 255], got ", e);
    out.push_back(e);
  }
  return out;
}

void validate(const ImageTrainConfig& config) {
  ImageTrainConfig c = config;
  for (const lm::ConfigField& f : config_fields(c))
    if (auto* d = std::get_if<double*>(&f.value))
      MG_CHECK(std::isfinite(**d), "train_image: --", f.name, " must be a finite number, got ", **d);
  lm::parse_device(c.device, "train_image");
  lm::check_one_of(c.moe, "train_image", "moe", {"topk", "soft"});
  lm::check_one_of(c.attack_grad, "train_image", "attack-grad", {"detached", "full"});
  for (auto [v, flag] : {std::pair{c.blocks, "blocks"}, {c.dim, "dim"}, {c.heads, "heads"},
                         {c.expert_hidden, "expert-hidden"}, {c.experts, "experts"}, {c.k, "k"}, {c.slots, "slots"},
                         {c.patch, "patch"}, {c.batch, "batch"}, {c.pgd_steps, "pgd-steps"},
                         {c.eval_batch, "eval-batch"}, {c.log_every, "log-every"}})
    MG_CHECK(v >= 1, "train_image: --", flag, " must be >= 1, got ", v);
  for (auto [v, flag] : {std::pair{c.epochs, "epochs"}, {c.steps, "steps"}, {c.warmup, "warmup"}, {c.seed, "seed"},
                         {c.threads, "threads"}, {c.train_size, "train-size"}, {c.test_size, "test-size"},
                         {c.attack_seed, "attack-seed"}})
    MG_CHECK(v >= 0, "train_image: --", flag, " must be >= 0, got ", v);
  MG_CHECK(c.k <= c.experts, "train_image: --k must be <= --experts (", c.experts, "), got ", c.k);
  MG_CHECK(c.dim % c.heads == 0, "train_image: --dim (", c.dim, ") must be a multiple of --heads (", c.heads, ")");
  MG_CHECK(c.lr > 0, "train_image: --lr must be > 0, got ", c.lr);
  MG_CHECK(c.min_lr >= 0 && c.min_lr <= c.lr, "train_image: --min-lr must be in [0, ", c.lr, "], got ", c.min_lr);
  MG_CHECK(c.pgd_step > 0, "train_image: --pgd-step must be > 0, got ", c.pgd_step);
  for (auto [v, flag] : {std::pair{c.weight_decay, "weight-decay"}, {c.clip_grad, "clip-grad"},
                         {c.balance_coef, "balance-coef"}})
    MG_CHECK(v >= 0, "train_image: --", flag, " must be >= 0, got ", v);
  const std::string arch = effective_arch(c);
  try {
    check_architecture(arch);
  } catch (const Error& e) {
    throw Error(std::string("train_image: --arch: ") + e.what());
  }
  epsilons(c);
}

ViTConfig vit_config(const ImageTrainConfig& c, int64_t image_size, int64_t channels, int64_t classes) {
  ViTConfig v;
  v.image_size = image_size, v.channels = channels, v.classes = classes, v.patch = c.patch;
  v.arch = effective_arch(c);
  BlockConfig& b = v.block;
  b.dim = c.dim, b.heads = c.heads, b.ffn_hidden = c.expert_hidden;
  b.soft_moe = c.moe == "soft";
  b.moe.hidden = c.expert_hidden, b.moe.experts = c.experts, b.moe.k = c.k;
  b.soft.hidden = c.expert_hidden, b.soft.experts = c.experts, b.soft.slots = c.slots;
  return v;
}

ImageDataset first_images(const ImageDataset& d, int64_t n) {
  const int64_t total = d.images.size(0);
  if (n <= 0 || n >= total) return d;
  return {narrow(d.images, 0, 0, n), narrow(d.labels, 0, 0, n)};
}

int64_t set_ac_differentiable(ViT& model, bool on) {
  int64_t n = 0;
  for (auto& layer : model.layers) {
    if (layer->moe && layer->moe->config.use_ac) {
      static_cast<ACRouter&>(*layer->moe->router).ac.differentiable = on;
      ++n;
    } else if (layer->soft && layer->soft->config.use_ac) {
      layer->soft->config.differentiable = on;
      ++n;
    }
  }
  return n;
}

// ---- training ----

ImageTrainResult train_image_classifier(ViT& model, const ImageDataset& train, const ImageDataset& test,
                                        const ImageTrainConfig& c, MetricsWriter* metrics, Progress* progress,
                                        dist::Communicator* comm) {
  dist::SingleProcessCommunicator alone;
  dist::Communicator& ranks = comm ? *comm : alone;
  validate(c);
  check_dataset(train, "train_image_classifier", "training");
  check_dataset(test, "train_image_classifier", "test");
  const int64_t n = train.images.size(0), per_epoch = n / c.batch;
  MG_CHECK(per_epoch >= 1, "train_image: ", n, " training images are fewer than one batch of ", c.batch);
  const int64_t total = c.steps > 0 ? c.steps : c.epochs * per_epoch;
  const auto [first, local] = dist::local_rows(ranks, c.batch, "train_image: --batch");
  const Device device = lm::parse_device(c.device, "train_image");
  model.to(device);  // before the optimizer, so its state is made there
  dist::broadcast_parameters(ranks, model.parameters());  // rank 0's weights everywhere
  Adam opt(model.parameters(), AdamOptions{c.lr, 0.9, 0.999, 1e-8, c.weight_decay});
  // The batch order has its own stream, so the same seed gives every model the same batches.
  Generator order_gen(random_bits(static_cast<uint64_t>(c.seed), 1));
  std::vector<int64_t> order;
  const std::vector<int64_t> all_labels = train.labels.to_indices();
  ImageTrainResult r;
  double window_loss = 0, window_seconds = 0;
  int64_t window_steps = 0, window_images = 0;
  auto log = [&](const std::string& line) {
    if (progress) progress->log(line);
  };
  model.train();
  for (int64_t step = 1; step <= total; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t pos = (step - 1) % per_epoch;
    if (pos == 0) order = shuffled(n, order_gen);
    // this rank's slice of the global batch (all of it in one process)
    const auto begin = order.begin() + pos * c.batch + first;
    std::vector<int64_t> picked(begin, begin + local), picked_labels;
    for (int64_t i : picked) picked_labels.push_back(all_labels[i]);  // index_select takes float tensors only
    const Tensor images = index_select(train.images, 0, Tensor::from_indices(picked, {local})).to(device);
    const Tensor labels = Tensor::from_indices(picked_labels, {local}).to(device);
    const double lr = lr_at(c, step, total);
    opt.set_lr(lr);
    const ViTOutput out = model.forward(images);
    const Tensor ce = cross_entropy(out.logits, labels);
    const Tensor loss = ce + out.balance_loss * c.balance_coef;
    MG_CHECK(std::isfinite(loss.item()), "train_image: the loss is ", loss.item(), " at step ", step,
             "; training stopped (nothing saved); lower --lr or raise --warmup");
    opt.zero_grad();
    loss.backward();
    const double ce_value = dist::average_over_ranks(ranks, ce.item());
    dist::average_gradients(ranks, opt.params());
    const double norm = lm::clip_grad_norm(opt.params(), c.clip_grad);
    MG_CHECK(std::isfinite(norm), "train_image: the gradient norm is ", norm, " at step ", step,
             "; training stopped (nothing saved); lower --lr or raise --warmup");
    opt.step();

    const double seconds = seconds_since(t0);
    r.steps = step, r.images += c.batch, r.seconds += seconds;
    window_loss += ce_value, window_seconds += seconds, ++window_steps, window_images += c.batch;
    if (progress) progress->update(step, ce_value, c.batch);
    if (step % c.log_every == 0 || step == total) {
      r.last_loss = window_loss / window_steps;
      if (metrics)
        metrics->write({{"type", "train"}, {"step", step}, {"epoch", static_cast<double>(step) / per_epoch},
                        {"loss", r.last_loss}, {"balance_loss", out.balance_loss.item()}, {"lr", lr},
                        {"grad_norm", norm}, {"images_per_s", window_images / window_seconds}});
      window_loss = 0, window_seconds = 0, window_steps = 0, window_images = 0;
    }
    if (metrics && (step % per_epoch == 0 || step == total)) {
      const ImageEvalResult e = evaluate_image_classifier(model, test, c, false);
      json record = eval_to_json(e);
      record["type"] = "eval", record["step"] = step, record["epoch"] = static_cast<double>(step) / per_epoch;
      metrics->write(record);
      char line[128];
      std::snprintf(line, sizeof line, "eval step %lld: test accuracy %.2f%%, loss %.4f (%lld images)",
                    (long long)step, 100 * e.accuracy, e.loss, (long long)e.images);
      log(line);
    }
  }
  return r;
}

// ---- evaluation ----

ImageEvalResult evaluate_image_classifier(ViT& model, const ImageDataset& test, const ImageTrainConfig& c,
                                          bool attacks) {
  validate(c);
  check_dataset(test, "evaluate_image_classifier", "test");
  const Device device = lm::parse_device(c.device, "train_image");
  model.to(device);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<double> eps = attacks ? epsilons(c) : std::vector<double>();
  const bool full_grad = c.attack_grad == "full";
  struct ACGradMode {  // --attack-grad full: the differentiable W while attacking
    ViT& m;
    bool on;
    ~ACGradMode() {
      if (on) set_ac_differentiable(m, false);
    }
  } ac_mode{model, full_grad && set_ac_differentiable(model, true) > 0};
  const bool was_training = model.training();
  model.eval();
  Classifier classifier{model, [&model](const Tensor& x) { return model.forward(x).logits; }};
  ImageEvalResult r;
  r.attacks.resize(eps.size());
  std::vector<int64_t> fgsm_correct(eps.size()), pgd_correct(eps.size());
  int64_t correct = 0, batches = 0;
  double loss = 0;
  const int64_t n = test.images.size(0);
  for (int64_t start = 0; start < n; start += c.eval_batch, ++batches) {
    const int64_t len = std::min(c.eval_batch, n - start);
    const Tensor x = contiguous(narrow(test.images, 0, start, len)).to(device);
    const Tensor y = contiguous(narrow(test.labels, 0, start, len)).to(device);
    {
      NoGradGuard no_grad;
      const Tensor logits = model.forward(x).logits;
      correct += count_correct(logits, y);
      loss += cross_entropy(logits, y).item() * static_cast<double>(len);
      const auto stats = model.routing_stats();
      if (r.routing.empty()) {
        r.routing = stats;
      } else {
        for (size_t i = 0; i < stats.size(); ++i) {
          RoutingStats& a = r.routing[i].second;
          const RoutingStats& s = stats[i].second;
          for (size_t e = 0; e < a.tokens_per_expert.size(); ++e) a.tokens_per_expert[e] += s.tokens_per_expert[e];
          a.ac_mean += s.ac_mean, a.ac_std += s.ac_std;
          a.ac_min = std::min(a.ac_min, s.ac_min), a.ac_max = std::max(a.ac_max, s.ac_max);
        }
      }
    }
    for (size_t i = 0; i < eps.size(); ++i) {
      const Tensor adv_fgsm = fgsm(classifier, x, y, eps[i]);
      AttackOptions o;
      o.epsilon = eps[i], o.steps = c.pgd_steps, o.step_fraction = c.pgd_step;
      o.random_start = c.pgd_random_start, o.seed = random_bits(static_cast<uint64_t>(c.attack_seed), start);
      const Tensor adv_pgd = pgd(classifier, x, y, o);
      NoGradGuard no_grad;
      fgsm_correct[i] += count_correct(model.forward(adv_fgsm).logits, y);
      pgd_correct[i] += count_correct(model.forward(adv_pgd).logits, y);
    }
  }
  model.train(was_training);
  for (auto& [pos, s] : r.routing) s.ac_mean /= batches, s.ac_std /= batches;
  r.images = n;
  r.accuracy = static_cast<double>(correct) / n;
  r.loss = loss / n;
  for (size_t i = 0; i < eps.size(); ++i)
    r.attacks[i] = {eps[i], static_cast<double>(fgsm_correct[i]) / n, static_cast<double>(pgd_correct[i]) / n};
  r.seconds = seconds_since(t0);
  return r;
}

json eval_to_json(const ImageEvalResult& r) {
  json layers = json::array();
  for (const auto& [pos, s] : r.routing) {
    json l = {{"layer", pos}, {"tokens_per_expert", s.tokens_per_expert}};
    if (s.ac_max > 0) l["ac_mean"] = s.ac_mean, l["ac_std"] = s.ac_std, l["ac_min"] = s.ac_min, l["ac_max"] = s.ac_max;
    layers.push_back(l);
  }
  json attacks = json::array();
  for (const AttackAccuracy& a : r.attacks)
    attacks.push_back({{"eps", a.epsilon}, {"fgsm_accuracy", a.fgsm}, {"pgd_accuracy", a.pgd}});
  return {{"images", r.images},   {"accuracy", r.accuracy}, {"loss", r.loss},
          {"attacks", attacks},   {"layers", layers},       {"seconds", r.seconds}};
}

}  // namespace moegrad::data
