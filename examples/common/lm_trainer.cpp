// The language-model trainer (see lm_trainer.h): options, the training loop,
// evaluation and exact-resume checkpoints.
#include "examples/common/lm_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>
#include <nlohmann/json.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/node.h"
#include "dist/data_parallel.h"
#include "examples/common/lm_model.h"
#include "examples/common/word_swap.h"
#include "nn/atomic_file.h"
#include "nn/checkpoint.h"
#include "tensor/backend.h"
#ifdef MOEGRAD_WITH_CUDA
#include "cuda/optim.h"
#endif

namespace moegrad::lm {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {


double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <typename T>
T parse_number(const char* program, const std::string& flag, const std::string& text) {
  size_t used = 0;
  T value{};
  try {
    if constexpr (std::is_same_v<T, int64_t>)
      value = std::stoll(text, &used);
    else
      value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MG_CHECK(!text.empty() && used == text.size(), program, ": --", flag, " expects ",
           std::is_same_v<T, int64_t> ? "an integer" : "a number", ", got '", text, "'");
  return value;
}


// Rewrites a metrics file keeping the records up to `step` (those of a run
// resumed from that step's checkpoint would otherwise appear twice), through
// AtomicFile: a kill or a failure keeps the old file, which the next resume
// cuts again.
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept;
  for (std::string line; std::getline(in, line);) {
    json r = json::parse(line, nullptr, false);  // a line cut short by a crash is dropped
    if (r.is_object() && r["type"] != "final" && r["step"].is_number_integer() && r["step"].get<int64_t>() <= step)
      kept += line + "\n";
  }
  MG_CHECK(!in.bad(), "train_lm: cannot read ", path);
  AtomicFile out(path, "train_lm");
  out.write(kept.data(), kept.size());
  out.commit();
}

}  // namespace

// ---- options ----

std::vector<ConfigField> config_fields(LMTrainConfig& c) {
  return {
      {"data", &c.data, "folder with train.txt, valid.txt, test.txt", true},
      {"level", &c.level, "byte | word", false},
      {"min-count", &c.min_count, "word level: train words seen fewer times become <unk>", false},
      {"arch", &c.arch, "architecture: s attention, g top-k MoE, c AC MoE, f dense FFN", false},
      {"router", &c.router,
       "smoe (every c in --arch becomes g) | acmoe (--arch as given) | xmoe (c layers keep their gate, no AC)", false},
      {"dim", &c.dim, "model width", false},
      {"heads", &c.heads, "attention heads", false},
      {"experts", &c.experts, "experts per MoE layer", false},
      {"k", &c.k, "experts per token", false},
      {"expert-hidden", &c.expert_hidden, "hidden width of each expert", false},
      {"ffn-hidden", &c.ffn_hidden, "hidden width of the dense FFN (f layers)", false},
      {"seq-len", &c.seq_len, "tokens per sequence", false},
      {"batch", &c.batch, "sequences per batch (one optimizer step)", false},
      {"micro-batch", &c.micro_batch, "sequences per forward, gradients summed over the batch; 0: the whole batch",
       false},
      {"dropout", &c.dropout, "dropout probability", false},
      {"dropout-layout", &c.dropout_layout,
       "residual (embeddings, attention probabilities, every sublayer output, inside the FFN) | official (the "
       "paper's code: attention probabilities, inside the FFN and experts, the MoE output)",
       false},
      {"capacity-factor", &c.capacity_factor, "expert capacity factor; 0: no capacity, no dropping", false},
      {"gate", &c.gate, "gate of the g layers: linear | cosine | xmoe (cosine, orthogonal init, renormalised)",
       false},
      {"c-gate", &c.c_gate, "gate of the c layers: same (as --gate) | linear | cosine | xmoe", false},
      {"activation", &c.activation, "activation of the experts and the dense FFN: gelu | relu", false},
      {"expert-init", &c.expert_init, "linear (as PyTorch's Linear) | official (U(1/sqrt(in*out)), zero biases)",
       false},
      {"moe-residual", &c.moe_residual, "single | double (post-norm: norm(h + norm(h + moe(h))))", false},
      {"attention-bias", &c.attention_bias, "biases in the attention projections", false},
      {"embedding-std", &c.embedding_std, "token and position embeddings start from N(0, std^2)", false},
      {"head-bias", &c.head_bias, "a bias in the output projection", false},
      {"ac-stat", &c.ac_stat, "AC dispersion: mad | variance", false},
      {"ac-eps", &c.ac_eps, "AC: W = 1 / (s + eps)", false},
      {"ac-clip", &c.ac_clip, "AC: W clipped at clip * mean(W); 0: no clip", false},
      {"ac-scaling", &c.ac_scaling, "AC normalisation of W: feature | global", false},
      {"ac-small-clusters", &c.ac_small_clusters,
       "AC clusters of fewer than 2 tokens: official (s = 0, as the paper's code) | neutral (W = 1, out of the means)",
       false},
      {"ac-rows", &c.ac_rows, "AC table rows: experts | largest-index (the previous choices' largest + 1)", false},
      {"ac-mix", &c.ac_mix, "AC: mix W over the previous layer's top-m experts", false},
      {"ac-differentiable", &c.ac_differentiable, "AC: backpropagate through W (the paper detaches it)", false},
      {"ac-stats", &c.ac_stats,
       "AC statistics with several ranks: local (each rank's batch) | global (every rank's: the one-process W)",
       true},
      {"expert-parallel", &c.expert_parallel,
       "with several ranks: split each MoE layer's experts over them (expert parallelism; --experts divisible by "
       "the ranks), the rest data parallel",
       false},
      {"elliptical", &c.elliptical, "elliptical attention in the attention layers after the first", false},
      {"norm", &c.norm, "pre | post layer norm", false},
      {"optimizer", &c.optimizer, "adam | adamw", false},
      {"lr", &c.lr, "peak learning rate", false},
      {"min-lr", &c.min_lr, "cosine decay: the learning rate at the last step", false},
      {"beta1", &c.beta1, "Adam beta1", false},
      {"beta2", &c.beta2, "Adam beta2", false},
      {"weight-decay", &c.weight_decay, "weight decay (Adam: L2 in the gradient; AdamW: decoupled)", false},
      {"warmup", &c.warmup, "linear warm-up steps", false},
      {"cosine", &c.cosine, "cosine decay from the end of warm-up to --min-lr at --steps", false},
      {"clip-grad", &c.clip_grad, "max global gradient norm; 0: no clipping", false},
      {"balance-coef", &c.balance_coef, "weight of the g layers' load-balance loss", false},
      {"c-balance-coef", &c.c_balance_coef, "weight of the c layers' load-balance loss; < 0: --balance-coef", false},
      {"z-coef", &c.z_coef, "weight of the router z-loss", false},
      {"eval", &c.eval,
       "final evaluation: batch (AC statistics over each batch, as in training) | causal (each token from its own "
       "prefix, as at generation) | both",
       true},
      {"attack-rate", &c.attack_rate, "word-swap attack: share of non-stopword words swapped", true},
      {"attack-seed", &c.attack_seed, "word-swap attack seed (the same attacked text for every model)", true},
      {"steps", &c.steps, "training steps in all (a resumed run continues to this step)", true},
      {"seed", &c.seed, "seed of the initialisation, the batches and dropout", false},
      {"threads", &c.threads, "OpenMP threads; 0: OpenMP's default", true},
      {"log-every", &c.log_every, "steps between metric records (and plain progress lines)", true},
      {"eval-every", &c.eval_every, "steps between validation evals; 0: only at the end", true},
      {"eval-batches", &c.eval_batches, "validation batches per eval during training; 0: the whole split", true},
      {"checkpoint-every", &c.checkpoint_every, "steps between checkpoints; 0: only at the end", true},
      {"out", &c.out, "output folder (metrics.jsonl, checkpoint.safetensors)", true},
      {"device", &c.device, "cpu | cuda (needs a CUDA build and a visible GPU; may change on resume)", true},
      {"resume", &c.resume, "continue from <out>/checkpoint.safetensors", true},
      {"overwrite", &c.overwrite, "start afresh even though <out> holds a checkpoint", true},
  };
}

void check_one_of(const std::string& value, const char* program, const char* flag,
                  std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return;
    list += list.empty() ? a : std::string(" | ") + a;
  }
  throw Error(detail::cat(program, ": --", flag, " must be ", list, ", got '", value, "'"));
}

Device parse_device(const std::string& device, const char* program) {
  if (device == "cpu") return Device::cpu();
  MG_CHECK(device == "cuda", program, ": --device must be cpu | cuda, got '", device, "'");
  MG_CHECK(cuda_backend() != nullptr, program,
           ": --device cuda: no CUDA backend in this build (configure where nvcc is found, or with "
           "-DMOEGRAD_CUDA=ON); use --device cpu");
  MG_CHECK(cuda_device_count() > 0, program, ": --device cuda: no CUDA device visible (no GPU or driver, or "
           "CUDA_VISIBLE_DEVICES hides them); use --device cpu");
  return Device::cuda(0);
}

void parse_flags(const std::vector<ConfigField>& fields, const std::vector<std::string>& args, const char* program) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    MG_CHECK(arg.size() > 2 && arg.compare(0, 2, "--") == 0, program, ": expected a flag --name, got '", arg,
             "' (see --help)");
    const std::string name = arg.substr(2);
    auto find = [&](const std::string& n) {
      return std::find_if(fields.begin(), fields.end(), [&](const ConfigField& x) { return n == x.name; });
    };
    auto f = find(name);
    if (f == fields.end() && name.rfind("no-", 0) == 0) f = find(name.substr(3));
    MG_CHECK(f != fields.end(), program, ": unknown flag ", arg, " (see --help)");
    std::visit(
        [&](auto* v) {
          using T = std::remove_pointer_t<decltype(v)>;
          if constexpr (std::is_same_v<T, bool>) {
            *v = f->name == name;  // --flag or --no-flag
          } else {
            MG_CHECK(f->name == name, program, ": unknown flag ", arg, " (--no- is for on/off flags)");
            MG_CHECK(i + 1 < args.size(), program, ": ", arg, " needs a value");
            const std::string& text = args[++i];
            if constexpr (std::is_same_v<T, std::string>)
              *v = text;
            else
              *v = parse_number<T>(program, name, text);
          }
        },
        f->value);
  }
}

std::string flags_usage(const std::vector<ConfigField>& fields) {
  std::string out;
  for (const ConfigField& f : fields) {
    std::string flag = std::string("  --") + f.name, def;
    std::visit(
        [&](auto* v) {
          using T = std::remove_pointer_t<decltype(v)>;
          if constexpr (std::is_same_v<T, bool>) {
            flag += std::string(" / --no-") + f.name;
            def = std::string(" (default ") + (*v ? "on" : "off") + ")";
          } else {
            flag += std::is_same_v<T, std::string> ? " S" : std::is_same_v<T, int64_t> ? " N" : " X";
            def = " (default " + json(*v).dump() + ")";
          }
        },
        f.value);
    flag.resize(std::max<size_t>(flag.size() + 1, 30), ' ');
    out += flag + f.help + def + "\n";
  }
  return out;
}

int run_program(int argc, char** argv, const char* program, const char* usage, const std::vector<ConfigField>& fields,
                const std::function<void()>& run) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s\n\n%s", usage, flags_usage(fields).c_str());
      return 0;
    }
  try {
    parse_flags(fields, args, program);
    run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

json fields_to_json(const std::vector<ConfigField>& fields) {
  json j = json::object();
  for (const ConfigField& f : fields) std::visit([&](auto* v) { j[f.name] = *v; }, f.value);
  return j;
}

json config_to_json(const LMTrainConfig& config) {
  LMTrainConfig c = config;
  return fields_to_json(config_fields(c));
}

std::vector<std::string> recipe_args(const std::string& name) {
  std::vector<fs::path> candidates;
  if (name.find('/') != std::string::npos || fs::path(name).extension() == ".recipe") {
    candidates.push_back(name);
  } else {
    const std::string file = name + ".recipe";
    if (const char* dir = std::getenv("MOEGRAD_RECIPES")) candidates.push_back(fs::path(dir) / file);
    candidates.push_back(fs::path("recipes") / file);
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec)
      for (const fs::path& up : {exe.parent_path(), exe.parent_path().parent_path()})
        candidates.push_back(up / "recipes" / file);
#ifdef MOEGRAD_SOURCE_DIR
    candidates.push_back(fs::path(MOEGRAD_SOURCE_DIR) / "recipes" / file);
#endif
  }
  for (const fs::path& path : candidates) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) continue;
    std::ifstream in(path);
    MG_CHECK(in, "train_lm: --recipe ", name, ": cannot read ", path.string());
    std::vector<std::string> args;
    for (std::string line; std::getline(in, line);) {
      line = line.substr(0, line.find('#'));
      std::istringstream words(line);
      for (std::string w; words >> w;) args.push_back(w);
    }
    MG_CHECK(!in.bad(), "train_lm: --recipe ", name, ": error reading ", path.string());
    return args;
  }
  std::string tried;
  for (const fs::path& path : candidates) tried += " " + path.string();
  throw Error("train_lm: --recipe " + name + ": no such recipe (tried" + tried + ")");
}

LMTrainConfig parse_args(const std::vector<std::string>& args) {
  LMTrainConfig c;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] != "--recipe") {
      rest.push_back(args[i]);
      continue;
    }
    MG_CHECK(i + 1 < args.size(), "train_lm: --recipe needs a name or a path");
    const std::vector<std::string> recipe = recipe_args(args[++i]);
    MG_CHECK(std::find(recipe.begin(), recipe.end(), "--recipe") == recipe.end(), "train_lm: recipe ", args[i],
             " names another recipe; recipes do not nest");
    parse_flags(config_fields(c), recipe, "train_lm");  // the recipe first: flags given here override it
  }
  parse_flags(config_fields(c), rest, "train_lm");
  return c;
}

std::string usage() {
  LMTrainConfig c;
  return "  --recipe S                  a recipe's flags first (recipes/S.recipe or a file), then these over them\n" +
         flags_usage(config_fields(c));
}

std::string effective_arch(const LMTrainConfig& c) {
  std::string arch = c.arch;
  if (c.router == "smoe") std::replace(arch.begin(), arch.end(), 'c', 'g');
  return arch;
}

void validate(const LMTrainConfig& config) {
  LMTrainConfig c = config;
  for (const ConfigField& f : config_fields(c))
    if (auto* d = std::get_if<double*>(&f.value))
      MG_CHECK(std::isfinite(**d), "train_lm: --", f.name, " must be a finite number, got ", **d);
  parse_device(c.device, "train_lm");
  check_one_of(c.level, "train_lm", "level", {"byte", "word"});
  check_one_of(c.router, "train_lm", "router", {"smoe", "acmoe", "xmoe"});
  check_one_of(c.gate, "train_lm", "gate", {"linear", "cosine", "xmoe"});
  check_one_of(c.c_gate, "train_lm", "c-gate", {"same", "linear", "cosine", "xmoe"});
  check_one_of(c.dropout_layout, "train_lm", "dropout-layout", {"residual", "official"});
  check_one_of(c.activation, "train_lm", "activation", {"gelu", "relu"});
  check_one_of(c.expert_init, "train_lm", "expert-init", {"linear", "official"});
  check_one_of(c.moe_residual, "train_lm", "moe-residual", {"single", "double"});
  check_one_of(c.ac_small_clusters, "train_lm", "ac-small-clusters", {"official", "neutral"});
  check_one_of(c.ac_rows, "train_lm", "ac-rows", {"experts", "largest-index"});
  check_one_of(c.eval, "train_lm", "eval", {"batch", "causal", "both"});
  check_one_of(c.ac_stat, "train_lm", "ac-stat", {"mad", "variance"});
  check_one_of(c.ac_stats, "train_lm", "ac-stats", {"local", "global"});
  MG_CHECK(c.ac_stats == "local" || c.ac_rows == "experts",
           "train_lm: --ac-stats global needs --ac-rows experts (the largest previous index differs between ranks)");
  check_one_of(c.ac_scaling, "train_lm", "ac-scaling", {"feature", "global"});
  check_one_of(c.norm, "train_lm", "norm", {"pre", "post"});
  check_one_of(c.optimizer, "train_lm", "optimizer", {"adam", "adamw"});
  auto at_least = [](int64_t v, int64_t low, const char* flag) {
    MG_CHECK(v >= low, "train_lm: --", flag, " must be >= ", low, ", got ", v);
  };
  for (auto [v, flag] : {std::pair{c.dim, "dim"}, {c.heads, "heads"}, {c.experts, "experts"}, {c.k, "k"},
                         {c.expert_hidden, "expert-hidden"}, {c.ffn_hidden, "ffn-hidden"}, {c.seq_len, "seq-len"},
                         {c.batch, "batch"}, {c.steps, "steps"}, {c.log_every, "log-every"},
                         {c.min_count, "min-count"}, {c.ac_mix, "ac-mix"}})
    at_least(v, 1, flag);
  for (auto [v, flag] : {std::pair{c.warmup, "warmup"}, {c.seed, "seed"}, {c.threads, "threads"},
                         {c.eval_every, "eval-every"}, {c.eval_batches, "eval-batches"},
                         {c.checkpoint_every, "checkpoint-every"}, {c.attack_seed, "attack-seed"},
                         {c.micro_batch, "micro-batch"}})
    at_least(v, 0, flag);
  MG_CHECK(c.micro_batch == 0 || c.batch % c.micro_batch == 0, "train_lm: --micro-batch (", c.micro_batch,
           ") must divide --batch (", c.batch, ")");
  MG_CHECK(c.moe_residual == "single" || c.norm == "post", "train_lm: --moe-residual double needs --norm post");
  MG_CHECK(c.embedding_std > 0, "train_lm: --embedding-std must be > 0, got ", c.embedding_std);
  // sizes far beyond this trainer's reach are refused before they overflow anything
  for (auto [v, flag] : {std::pair{c.dim, "dim"}, {c.heads, "heads"}, {c.experts, "experts"},
                         {c.expert_hidden, "expert-hidden"}, {c.ffn_hidden, "ffn-hidden"}, {c.seq_len, "seq-len"},
                         {c.batch, "batch"}, {c.micro_batch, "micro-batch"}})
    MG_CHECK(v <= (int64_t(1) << 20), "train_lm: --", flag, " must be <= 2^20, got ", v);
  MG_CHECK(c.steps <= (int64_t(1) << 40), "train_lm: --steps must be <= 2^40, got ", c.steps);
  MG_CHECK(c.capacity_factor <= static_cast<double>(c.experts), "train_lm: --capacity-factor must be <= --experts (",
           c.experts, "), got ", c.capacity_factor);
  MG_CHECK(c.k <= c.experts, "train_lm: --k must be <= --experts (", c.experts, "), got ", c.k);
  MG_CHECK(c.ac_mix <= c.k, "train_lm: --ac-mix must be <= --k (", c.k, "), got ", c.ac_mix);
  MG_CHECK(c.dim % c.heads == 0, "train_lm: --dim (", c.dim, ") must be a multiple of --heads (", c.heads, ")");
  auto in_range = [](double v, double low, double high, bool high_open, const char* flag) {
    MG_CHECK(v >= low && (high_open ? v < high : v <= high), "train_lm: --", flag, " must be in [", low, ", ", high,
             high_open ? ")" : "]", ", got ", v);
  };
  const double inf = INFINITY;
  in_range(c.dropout, 0, 1, true, "dropout");
  in_range(c.beta1, 0, 1, true, "beta1");
  in_range(c.beta2, 0, 1, true, "beta2");
  in_range(c.attack_rate, 0, 1, false, "attack-rate");
  in_range(c.min_lr, 0, c.lr, false, "min-lr");
  for (auto [v, flag] : {std::pair{c.capacity_factor, "capacity-factor"}, {c.ac_clip, "ac-clip"},
                         {c.weight_decay, "weight-decay"}, {c.clip_grad, "clip-grad"},
                         {c.balance_coef, "balance-coef"}, {c.z_coef, "z-coef"}})
    in_range(v, 0, inf, true, flag);
  MG_CHECK(c.lr > 0, "train_lm: --lr must be > 0, got ", c.lr);
  MG_CHECK(c.ac_eps > 0, "train_lm: --ac-eps must be > 0, got ", c.ac_eps);
  const std::string arch = effective_arch(c);
  try {
    check_architecture(arch);
  } catch (const Error& e) {
    throw Error(std::string("train_lm: --arch: ") + e.what());
  }
  MG_CHECK(c.router == "smoe" || arch.find('c') != std::string::npos, "train_lm: --router ", c.router,
           " needs an AC layer (c) in --arch, got '", arch, "'");
  MG_CHECK(!(c.resume && c.overwrite), "train_lm: --resume and --overwrite exclude each other");
}

double lr_at(const LMTrainConfig& c, int64_t step) {
  if (step <= c.warmup) return c.lr * static_cast<double>(step) / static_cast<double>(c.warmup);
  if (!c.cosine) return c.lr;
  const double progress =
      std::min(1.0, static_cast<double>(step - c.warmup) / static_cast<double>(std::max<int64_t>(1, c.steps - c.warmup)));
  return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1 + std::cos(M_PI * progress));
}

double grad_norm(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (const Tensor g = p.grad(); g.defined()) {
      MG_CHECK(grads.empty() || g.device() == grads.front().device(), "grad_norm: gradients on ",
               grads.empty() ? "" : grads.front().device().str(), " and ", g.device().str());
      grads.push_back(contiguous(g));
    }
  double norm = 0;
#ifdef MOEGRAD_WITH_CUDA
  if (!grads.empty() && grads.front().device().is_cuda()) {
    norm = cuda_global_norm(grads);  // on the device, one host read
  } else
#endif
  {
    double sq = 0;  // in double, in parameter order: the same for every thread count
    for (const Tensor& c : grads)
      dispatch_float(c.dtype(), "grad_norm", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* d = c.data<T>();
        for (int64_t i = 0; i < c.numel(); ++i) sq += static_cast<double>(d[i]) * static_cast<double>(d[i]);
      });
    norm = std::sqrt(sq);
  }
  return norm;
}

void scale_to_max_norm(const std::vector<Tensor>& params, double norm, double max_norm) {
  if (!(max_norm > 0 && norm > max_norm && std::isfinite(norm))) return;
  NoGradGuard no_grad;
  const double scale = max_norm / norm;
  for (const Tensor& p : params)
    if (const Tensor g = p.grad(); g.defined()) g.copy_(mul(g, scale));
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  const double norm = grad_norm(params);
  scale_to_max_norm(params, norm, max_norm);
  return norm;
}

// ---- the trainer ----

LMTrainer::LMTrainer(const LMTrainConfig& config, std::FILE* log, dist::CommPtr comm)
    : config_(config), log_(log), comm_(comm ? comm : std::make_shared<dist::SingleProcessCommunicator>()) {
  const LMTrainConfig& c = config_;
  validate(c);
  const bool rank0 = comm_->rank() == 0;
  if (!rank0) log_ = nullptr;
  std::tie(first_row_, local_batch_) = dist::local_rows(*comm_, c.batch, "train_lm: --batch");
  MG_CHECK(c.micro_batch == 0 || local_batch_ % c.micro_batch == 0, "train_lm: --micro-batch (", c.micro_batch,
           ") must divide the batch of each of the ", comm_->world_size(), " ranks (", local_batch_, ")");
#ifdef _OPENMP
  if (c.threads > 0) omp_set_num_threads(static_cast<int>(c.threads));
#endif
  // Data: the vocabulary from train; the attack on the raw valid/test text.
  const data::TextFiles files = data::read_text_folder(c.data);
  data::WordVocabOptions vocab_options;
  vocab_options.min_count = c.min_count;
  tokenizer_ = data::make_tokenizer(c.level, files.train, vocab_options);
  corpus_ = data::encode_corpus(files, *tokenizer_);
  // evaluation batches of the training forward's size, so an AC layer's statistics see as many windows
  eval_ = make_eval_splits(files.valid, files.test, *tokenizer_, c.level, c.attack_rate, c.attack_seed,
                           c.micro_batch > 0 ? c.micro_batch : local_batch_, c.seq_len);
  LMConfig mc = model_config(c, tokenizer_->vocab_size());
  if (c.ac_stats == "global") mc.block.moe.ac.stats.ranks = comm_;
  expert_parallel_ = c.expert_parallel && comm_->world_size() > 1;
  if (expert_parallel_) mc.block.expert_ranks = comm_;

  // The same seed gives SMoE and ACMoE the same initial weights (the AC router
  // has no parameters of its own) and the same batches.
  const uint64_t seed = static_cast<uint64_t>(c.seed);
  Generator init_gen(random_bits(seed, 0));
  model_ = std::make_shared<TransformerLM>(mc, InitOptions{DType::Float32, &init_gen});
  device_ = parse_device(c.device, "train_lm");
  model_->to(device_);  // before the optimizer, so its state is made there
  const std::vector<Tensor> params = model_->parameters();
  shards_.assign(params.size(), Shard{});
  for (const auto& layer : model_->layers)
    if (layer->moe && layer->moe->expert_comm)
      for (const Tensor& p : layer->moe->experts->parameters())
        for (size_t i = 0; i < params.size(); ++i)
          if (params[i].same(p)) shards_[i] = {true, layer->moe->first_expert, p.size(0)};
  for (size_t i = 0; i < params.size(); ++i)
    (shards_[i].sharded ? expert_params_ : replicated_params_).push_back(params[i]);
  batch_gen_ = Generator(random_bits(seed, 1));
  const AdamOptions adam{c.lr, c.beta1, c.beta2, 1e-8, c.weight_decay};
  if (c.optimizer == "adamw")
    optimizer_ = std::make_unique<AdamW>(model_->parameters(), adam);
  else
    optimizer_ = std::make_unique<Adam>(model_->parameters(), adam);

  // The output folder: a fresh run or a resumed one (only rank 0 writes there).
  std::error_code ec;
  if (rank0) fs::create_directories(c.out, ec);
  const std::string ckpt = checkpoint_path();
  if (c.resume) {
    MG_CHECK(fs::exists(ckpt, ec), "train_lm: --resume: there is no checkpoint at ", ckpt);
    load_checkpoint(ckpt);
    if (rank0) truncate_metrics(metrics_path(), step_);
  } else if (rank0) {
    MG_CHECK(fs::is_directory(c.out, ec), "train_lm: cannot create the output folder ", c.out);
    MG_CHECK(c.overwrite || !fs::exists(ckpt, ec), "train_lm: ", c.out, " already holds a checkpoint (", ckpt,
             "); pass --resume to continue it or --overwrite to start afresh");
    // --overwrite: a later --resume must not find the old run's checkpoint. It
    // goes first: a kill between the two must not leave it without its metrics.
    fs::remove(ckpt, ec);
    fs::remove(metrics_path(), ec);
  }
  if (rank0) metrics_ = std::make_unique<data::MetricsWriter>(metrics_path());

  this->log(detail::cat("train_lm: ", mc.arch, " (router ", c.router, "), ", model_->num_parameters(),
                        " parameters; ", c.level, " level, vocabulary ", tokenizer_->vocab_size(), "; train ",
                        corpus_.train.size(), ", valid ", corpus_.valid.size(), ", test ", corpus_.test.size(),
                        " tokens; attack swapped ", eval_.valid_swapped, " valid and ", eval_.test_swapped,
                        " test words", c.resume ? detail::cat("; resumed at step ", step_) : std::string(),
                        comm_->world_size() > 1 ? detail::cat("; data parallel over ", comm_->world_size(),
                                                              " ranks of ", local_batch_, " sequences")
                                                : std::string(),
                        expert_parallel_ ? detail::cat(", each with ", c.experts / comm_->world_size(),
                                                       " of every MoE layer's ", c.experts, " experts")
                                         : std::string()));
}

std::string LMTrainer::checkpoint_path() const { return (fs::path(config_.out) / "checkpoint.safetensors").string(); }
std::string LMTrainer::metrics_path() const { return (fs::path(config_.out) / "metrics.jsonl").string(); }
const char* LMTrainer::metric_name() const { return config_.level == "byte" ? "bits/byte" : "perplexity"; }

void LMTrainer::log(const std::string& line) {
  if (progress_)
    progress_->log(line);
  else if (log_)
    std::fprintf(log_, "%s\n", line.c_str());
}

void LMTrainer::train(int64_t until) {
  const LMTrainConfig& c = config_;
  const int64_t last = until > 0 ? std::min(until, c.steps) : c.steps;
  if (step_ >= last) return;
  std::unique_ptr<data::Progress> progress;
  if (log_) {
    data::ProgressOptions po;
    po.total_steps = c.steps, po.start_step = step_, po.every = c.log_every, po.out = log_;
    progress = std::make_unique<data::Progress>(po);
  }
  struct Finish {  // ends the progress line however train() is left
    LMTrainer* t;
    ~Finish() {
      if (t->progress_) t->progress_->finish();
      t->progress_ = nullptr;
    }
  } finish{this};
  progress_ = progress.get();

  // rank 0's weights everywhere (expert shards are each rank's own)
  if (!parameters_synced_) dist::broadcast_parameters(*comm_, replicated_params_);
  parameters_synced_ = true;
  model_->train();
  double window_seconds = 0;
  int64_t window_tokens = 0;
  window_routing_.clear(), window_forwards_ = 0;
  while (step_ < last) {
    const int64_t step = step_ + 1;
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = lr_at(c, step);
    optimizer_->set_lr(lr);
    const data::Batch batch = data::random_batch(corpus_.train, c.batch, c.seq_len, batch_gen_);
    optimizer_->zero_grad();
    const double loss = dist::average_over_ranks(*comm_, train_forward_backward(batch, step));
    average_gradients();
    const double norm = clip_gradients();
    stop_unless_finite(norm, "gradient norm", step);
    optimizer_->step();
    step_ = step;
    history_.push_back({step, loss, lr, norm});

    const double seconds = seconds_since(t0);
    window_seconds += seconds, train_seconds_ += seconds;
    window_tokens += batch.tokens, train_tokens_ += batch.tokens;
    if (progress) progress->update(step, loss, batch.tokens);
    if (metrics_ && (step % c.log_every == 0 || step == last)) {
      average_routing(window_routing_, window_forwards_);
      json record = {{"type", "train"}, {"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm},
                     {"tokens_per_s", window_tokens / window_seconds}};
      if (json ac = ac_diagnostics_json(window_routing_); !ac.empty()) record["ac_layers"] = ac;
      metrics_->write(record);
      window_seconds = 0, window_tokens = 0;
      window_routing_.clear(), window_forwards_ = 0;
    }
    if (evaluates_here() && ((c.eval_every > 0 && step % c.eval_every == 0) || step == c.steps)) {
      const EvalResult r = evaluate("valid", false, c.eval_batches);
      if (metrics_) {  // rank 0 (the others took part in an expert-parallel evaluation)
        json record = eval_json(r);
        record["type"] = "eval", record["step"] = step, record["split"] = "valid";
        metrics_->write(record);
        char line[160];
        std::snprintf(line, sizeof line, "eval step %lld: valid loss %.4f, %s %.4f (%lld batches)", (long long)step,
                      r.loss, metric_name(), r.metric, (long long)r.batches);
        log(line + ac_diagnostics_line(r.routing));
      }
    }
    if ((c.checkpoint_every > 0 && step % c.checkpoint_every == 0) || step == c.steps) save_checkpoint();
  }
}

void LMTrainer::stop_unless_finite(double value, const char* what, int64_t step) const {
  MG_CHECK(std::isfinite(value), "train_lm: the ", what, " is ", value, " at step ", step,
           "; training stopped. The last checkpoint (", checkpoint_path(),
           ") is kept as it was; lower --lr or raise --warmup, and resume or restart");
}

void LMTrainer::average_gradients() {
  if (!expert_parallel_) return dist::average_gradients(*comm_, optimizer_->params());
  dist::average_gradients(*comm_, replicated_params_);
  // Each rank's loss is the mean over its own tokens, so the sum the all-to-all's
  // backward brought to a shard is N times the global batch's gradient. An expert
  // tensor's gradient is defined in one process whenever the layer routes a
  // token; here it is zeros where none reached this rank's experts.
  NoGradGuard no_grad;
  const double scale = 1.0 / static_cast<double>(comm_->world_size());
  for (const Tensor& p : expert_params_) {
    const Tensor g = p.grad();
    p.set_grad(g.defined() ? mul(g, scale) : Tensor::zeros(p.shape(), p.dtype(), p.device()));
  }
}

double LMTrainer::clip_gradients() {
  const std::vector<Tensor>& params = optimizer_->params();
  if (!expert_parallel_) return clip_grad_norm(params, config_.clip_grad);
  // the replicated gradients once, the shards' squares summed over the ranks
  const double replicated = grad_norm(replicated_params_), local = grad_norm(expert_params_);
  Tensor shards_sq = Tensor::from_vector({local * local}, {1}, DType::Float64);
  comm_->all_reduce_sum({shards_sq});
  const double norm = std::sqrt(replicated * replicated + shards_sq.item());
  scale_to_max_norm(params, norm, config_.clip_grad);
  return norm;
}

double LMTrainer::train_forward_backward(const data::Batch& batch, int64_t step) {
  const LMTrainConfig& c = config_;
  const double c_coef = c.c_balance_coef < 0 ? c.balance_coef : c.c_balance_coef;
  const int64_t micro = c.micro_batch > 0 ? c.micro_batch : local_batch_, parts = local_batch_ / micro;
  double loss = 0;
  for (int64_t m = 0; m < parts; ++m) {  // each forward routes its own micro-batch (its own AC statistics)
    const int64_t first = first_row_ + m * micro;
    const Tensor inputs = micro == c.batch ? batch.inputs : narrow(batch.inputs, 0, first, micro);
    const Tensor targets = micro == c.batch ? batch.targets : narrow(batch.targets, 0, first, micro);
    const LMOutput out = model_->forward(inputs.to(device_), targets.to(device_));
    const Tensor balance = c_coef == c.balance_coef ? out.balance_loss * c.balance_coef
                                                    : out.g_balance_loss * c.balance_coef + out.c_balance_loss * c_coef;
    Tensor total = out.loss + balance + out.z_loss * c.z_coef;
    if (parts > 1) total = total * (1.0 / static_cast<double>(parts));
    stop_unless_finite(total.item(), "loss", step);
    total.backward();
    loss += out.loss.item() / static_cast<double>(parts);
    accumulate_routing(window_routing_, model_->routing_stats());
    window_forwards_++;
  }
  return loss;
}

EvalResult LMTrainer::evaluate(const std::string& split, bool attacked, int64_t max_batches, EvalMode mode,
                               data::Progress* progress) {
  return evaluate_lm(*model_, eval_.get(split, attacked), max_batches, mode, device_, config_.level == "byte",
                     progress);
}

bool LMTrainer::is_ac_layer(int64_t pos) const {
  return model_->layers[pos]->moe && model_->layers[pos]->moe->config.use_ac;
}

json LMTrainer::ac_diagnostics_json(const std::vector<std::pair<int64_t, RoutingStats>>& routing) const {
  json layers = json::array();
  for (const auto& [pos, s] : routing)
    if (is_ac_layer(pos))
      layers.push_back({{"layer", pos}, {"ac_empty", s.ac_empty}, {"ac_single", s.ac_single},
                        {"ac_token_weight", s.ac_token_weight}, {"ac_mean", s.ac_mean}, {"ac_std", s.ac_std}});
  return layers;
}

std::string LMTrainer::ac_diagnostics_line(const std::vector<std::pair<int64_t, RoutingStats>>& routing) const {
  std::string line;
  for (const auto& [pos, s] : routing)
    if (is_ac_layer(pos)) {
      char part[160];
      std::snprintf(part, sizeof part, "; AC layer %lld: %.2f empty, %.2f single-token clusters, token weight %.3g",
                    (long long)pos, s.ac_empty, s.ac_single, s.ac_token_weight);
      line += part;
    }
  return line;
}

json LMTrainer::eval_json(const EvalResult& r) const {
  json layers = json::array();
  for (const auto& [pos, s] : r.routing) {
    json l = {{"layer", pos},         {"tokens_per_expert", s.tokens_per_expert}, {"dropped", s.dropped},
              {"balance_loss", s.balance_loss}, {"z_loss", s.z_loss}};
    if (is_ac_layer(pos)) {
      l["ac_mean"] = s.ac_mean, l["ac_std"] = s.ac_std, l["ac_min"] = s.ac_min, l["ac_max"] = s.ac_max;
      l["ac_empty"] = s.ac_empty, l["ac_single"] = s.ac_single, l["ac_token_weight"] = s.ac_token_weight;
    }
    layers.push_back(l);
  }
  return {{"loss", r.loss}, {"metric", r.metric}, {"tokens", r.tokens}, {"batches", r.batches}, {"layers", layers}};
}

const EvalResult& FinalReport::at(const std::string& name) const {
  for (const auto& [n, r] : results)
    if (n == name) return r;
  throw Error("FinalReport: no result '" + name + "' (see --eval)");
}

FinalReport LMTrainer::final_report() {
  FinalReport f;
  f.tokens_per_second = train_seconds_ > 0 ? train_tokens_ / train_seconds_ : 0.0;
  json record = {{"type", "final"}, {"step", step_}, {"metric", metric_name()},
                 {"router", config_.router}, {"tokens_per_s", f.tokens_per_second}};
  for (EvalMode mode : {EvalMode::Batch, EvalMode::Causal}) {
    const bool causal = mode == EvalMode::Causal;
    if (config_.eval != "both" && (config_.eval == "causal") != causal) continue;
    for (const char* split : {"valid", "test"})
      for (bool attacked : {false, true}) {
        const std::string name = std::string(split) + (attacked ? "_attacked" : "") + (causal ? "_causal" : "");
        std::unique_ptr<data::Progress> progress;
        if (log_) {
          data::ProgressOptions po;
          po.total_steps = static_cast<int64_t>(eval_.get(split, attacked).size());
          po.every = std::max<int64_t>(1, po.total_steps / 10), po.out = log_, po.label = "eval " + name;
          progress = std::make_unique<data::Progress>(po);
        }
        EvalResult r = evaluate(split, attacked, 0, mode, progress.get());
        if (progress) progress->finish();
        json j = eval_json(r);
        j.erase("layers");
        record[name] = j;
        f.results.emplace_back(name, std::move(r));
      }
  }
  if (metrics_) {
    metrics_->write(record);
    metrics_->sync();
  }
  return f;
}

// ---- checkpoints ----

std::vector<std::pair<std::string, Generator*>> LMTrainer::named_generators() {
  std::vector<std::pair<std::string, Generator*>> out = {{"batch", &batch_gen_}};
  for (const auto& [name, gen] : model_->named_generators()) out.emplace_back("model." + name, gen);
  return out;
}

void LMTrainer::save_checkpoint() {
  if (comm_->rank() != 0 && !expert_parallel_) return;
  // The records up to this step are durable before a checkpoint says the run got here.
  if (metrics_) metrics_->sync();
  // Under expert parallelism every rank gets here in the same order: a shard
  // (and its optimizer state) becomes the one-process tensor on rank 0.
  auto whole = [&](size_t i, const Tensor& t) { return shards_[i].sharded ? dist::gather_rows(*comm_, t) : t; };
  TensorMap tensors;
  const auto named = model_->named_parameters();
  const std::vector<ParamState>& state = optimizer_->state();
  const std::vector<std::string>& buffers = optimizer_->buffer_names();
  for (size_t i = 0; i < named.size(); ++i) {
    const std::string& name = named[i].first;
    tensors["model." + name] = whole(i, named[i].second);
    tensors["optim." + name + ".step"] = Tensor::from_indices({state[i].step}, {1});
    for (size_t k = 0; k < state[i].buffers.size(); ++k)
      tensors["optim." + name + "." + buffers[k]] = whole(i, state[i].buffers[k]);
  }
  const auto gens = named_generators();
  json rng = json::object();
  std::vector<int64_t> bits;  // this rank's (seed, offset) pairs, as int64 bit patterns
  for (const auto& [name, gen] : gens) {
    rng[name] = {gen->seed(), gen->offset()};
    for (uint64_t v : {gen->seed(), gen->offset()}) {
      int64_t b;
      std::memcpy(&b, &v, sizeof b);
      bits.push_back(b);
    }
  }
  if (expert_parallel_) {  // the experts' dropout draws differ between the ranks: keep every rank's
    const int ranks = comm_->world_size();
    const int64_t per_rank = static_cast<int64_t>(bits.size());
    const Tensor all = dist::gather_rows(*comm_, Tensor::from_indices(bits, {1, per_rank}));
    if (comm_->rank() != 0) return;
    const std::vector<int64_t> bits_all = all.to_indices();
    std::vector<uint64_t> states(bits_all.size());
    std::memcpy(states.data(), bits_all.data(), states.size() * sizeof(uint64_t));
    rng["ranks"] = ranks;
    for (int r = 1; r < ranks; ++r)
      for (size_t g = 0; g < gens.size(); ++g)
        rng[detail::cat("rank", r, ".", gens[g].first)] = {states[r * per_rank + 2 * g],
                                                          states[r * per_rank + 2 * g + 1]};
  }
  save_safetensors(checkpoint_path(), tensors,
                   {{"format", kCheckpointFormat},
                    {"step", std::to_string(step_)},
                    {"config", config_to_json(config_).dump()},
                    {"vocab", tokenizer_->save()},
                    {"rng", rng.dump()}});
}

json parse_metadata_json(const std::string& text, const char* key, const std::string& where) {
  // Errors print the values they reject, and printing recurses once per level:
  // a deeper value than any checkpoint has (the generator states: 2) is refused instead.
  constexpr int kMaxDepth = 16;
  bool too_deep = false;
  json j = json::parse(text, [&](int depth, json::parse_event_t, json&) {
    too_deep = too_deep || depth > kMaxDepth;
    return depth <= kMaxDepth;
  }, false);
  MG_CHECK(j.is_object(), where, ": its '", key, "' metadata is not a JSON object");
  MG_CHECK(!too_deep, where, ": its '", key, "' metadata nests deeper than ", kMaxDepth, " levels");
  return j;
}

const std::string& checkpoint_entry(const std::map<std::string, std::string>& metadata, const char* key,
                                   const std::string& where) {
  auto it = metadata.find(key);
  MG_CHECK(it != metadata.end(), where, ": its metadata has no '", key, "'; not a train_lm checkpoint");
  return it->second;
}

int64_t checkpoint_step(const std::map<std::string, std::string>& metadata, const std::string& where) {
  const std::string& format = checkpoint_entry(metadata, "format", where);
  MG_CHECK(format == kCheckpointFormat, where, ": format '", format, "', expected '", kCheckpointFormat, "'");
  const std::string& step = checkpoint_entry(metadata, "step", where);
  const bool digits = !step.empty() && step.size() < 18 && step.find_first_not_of("0123456789") == std::string::npos;
  MG_CHECK(digits, where, ": step '", step, "' is not a step number");
  return std::stoll(step);
}

CheckpointMetadata read_checkpoint_metadata(const std::map<std::string, std::string>& metadata,
                                            const LMTrainConfig& config, const data::Tokenizer& tokenizer,
                                            const std::vector<std::string>& generators, const std::string& where) {
  auto meta = [&](const char* key) -> const std::string& { return checkpoint_entry(metadata, key, where); };
  auto parse_json = [&](const char* key) { return parse_metadata_json(meta(key), key, where); };
  CheckpointMetadata out;
  out.step = checkpoint_step(metadata, where);

  // The config, except what may change on resume, must be the same.
  const json saved = parse_json("config"), now = config_to_json(config);
  std::string diffs;
  LMTrainConfig names;
  for (const ConfigField& f : config_fields(names)) {
    if (f.run_control) continue;
    auto it = saved.find(f.name);
    if (it == saved.end() || *it != now[f.name])
      diffs += detail::cat(" --", f.name, " ", it == saved.end() ? "(missing)" : it->dump(), " there, ",
                           now[f.name].dump(), " here;");
  }
  MG_CHECK(diffs.empty(), "config mismatch: ", where, " was written with different options:", diffs,
           " resume with the checkpoint's options");
  data::check_same_vocab(tokenizer, meta("vocab"), where);

  MG_CHECK(out.step <= config.steps, where, " is at step ", out.step, ", beyond --steps ", config.steps);

  const json rng = parse_json("rng");
  for (const std::string& name : generators) {
    auto it = rng.find(name);
    MG_CHECK(it != rng.end() && it->is_array() && it->size() == 2 && (*it)[0].is_number_unsigned() &&
                 (*it)[1].is_number_unsigned(),
             where, ": no valid state for the random generator '", name, "'");
    out.generator_states.emplace_back((*it)[0].get<uint64_t>(), (*it)[1].get<uint64_t>());
  }
  return out;
}

void LMTrainer::load_checkpoint(const std::string& path) {
  const SafetensorsFile file = load_safetensors(path);
  const std::string where = "checkpoint " + path;
  // Under expert parallelism rank r > 0 resumes its own generators (rank<r>.<name>).
  const int rank = comm_->rank(), ranks = comm_->world_size();
  if (expert_parallel_) {
    const json rng = parse_metadata_json(checkpoint_entry(file.metadata, "rng", where), "rng", where);
    const json written = rng.value("ranks", json(1));
    MG_CHECK(written == json(ranks), where, " was written by ", written.dump(), " expert-parallel rank(s); resume it with ",
             "as many, not ", ranks);
  }
  std::vector<std::string> generator_names;
  std::vector<Generator*> generators;
  for (const auto& [name, gen] : named_generators()) {
    generator_names.push_back(expert_parallel_ && rank > 0 ? detail::cat("rank", rank, ".", name) : name);
    generators.push_back(gen);
  }
  const CheckpointMetadata meta =
      read_checkpoint_metadata(file.metadata, config_, *tokenizer_, generator_names, where);
  auto tensor = [&](const std::string& name) -> const Tensor& {
    auto it = file.tensors.find(name);
    MG_CHECK(it != file.tensors.end(), where, ": tensor '", name, "' is missing");
    return it->second;
  };

  // this rank's rows of an expert tensor (under expert parallelism), else the tensor
  auto mine = [&](size_t i, const std::string& name, const Tensor& t) {
    if (!shards_[i].sharded) return t;
    const int64_t rows = shards_[i].rows * ranks;
    MG_CHECK(t.dim() >= 1 && t.size(0) == rows, where, ": '", name, "' has shape ", shape_str(t.shape()),
             ", expected ", rows, " experts' rows");
    return contiguous(narrow(t, 0, shards_[i].first, shards_[i].rows));
  };
  const auto named = model_->named_parameters();
  TensorMap params;
  for (const auto& [name, t] : file.tensors)
    if (name.rfind("model.", 0) == 0) params[name.substr(6)] = t;
  std::vector<ParamState> states;
  for (size_t i = 0; i < named.size(); ++i) {
    const std::string& name = named[i].first;
    if (auto it = params.find(name); it != params.end()) it->second = mine(i, "model." + name, it->second);
    ParamState st;
    const Tensor& s = tensor("optim." + name + ".step");
    MG_CHECK(s.dtype() == DType::Int64 && s.numel() == 1, where, ": 'optim.", name, ".step' must be one int64");
    st.step = s.to_indices()[0];
    if (st.step > 0)
      for (const std::string& b : optimizer_->buffer_names()) {
        const std::string key = "optim." + name + "." + b;
        st.buffers.push_back(mine(i, key, tensor(key)));
      }
    states.push_back(st);
  }
  try {
    load_module_state(*model_, params);
    optimizer_->load_state(states);
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  for (size_t i = 0; i < generators.size(); ++i)
    generators[i]->set_state(meta.generator_states[i].first, meta.generator_states[i].second);
  step_ = meta.step;
}

}  // namespace moegrad::lm
