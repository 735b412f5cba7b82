// The language-model trainer behind examples/train_lm, usable from tests: a
// corpus folder (train.txt, valid.txt, test.txt) at byte or word level, a
// TransformerLM from an architecture string with the top-k (SMoE) or AC router,
// Adam/AdamW with linear warm-up, optional cosine decay and clipping of the
// global gradient norm, evaluation as bits per byte (byte level) or perplexity
// (word level), clean and under the word-swap attack, JSONL metrics and
// safetensors checkpoints that resume exactly. With --device cuda the model,
// the optimizer state and each batch live on the GPU; the data, the attack
// and the checkpoint files stay on the host.
//
// Data parallel over several ranks (a communicator, dist/): every rank draws
// the same global batch (--batch sequences) and trains on its slice of
// --batch / ranks sequences; the gradients are averaged over the ranks
// before clipping, so every rank takes the same optimizer step. Rank 0 alone
// logs, evaluates during training, writes the metrics and the checkpoints.
// Each rank's forward sees only its slice: the balance loss and the AC
// statistics are those of its slice (as with --micro-batch; --ac-stats
// global: the AC statistics of the whole global batch), and dropout
// draws the same masks on every rank.
//
// Every option is one entry of config_fields() (--recipe, a file of flags read
// first, aside), which gives its command-line
// flag, its JSON name in the checkpoint and its help text.
//
// Files in the output folder:
//   metrics.jsonl           one record per line: {"type":"train", step, loss, lr, ...} every log interval,
//                           {"type":"eval", step, split, loss, metric, layers: [...]} every eval,
//                           {"type":"final", ...} after the full evaluation
//   checkpoint.safetensors  the latest checkpoint: parameters (model.<name>), Adam state
//                           (optim.<name>.m / .v / .step), and in the metadata the step, every
//                           RNG state, the vocabulary and the config
#pragma once
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <variant>
#include <vector>

#include "dist/communicator.h"
#include "examples/common/lm_eval.h"
#include "examples/common/progress.h"
#include "examples/common/text_data.h"
#include "moe/transformer_lm.h"
#include "nn/optim.h"

namespace moegrad::lm {

struct LMTrainConfig {
  // data
  std::string data = "data/kjv";  // folder with train.txt, valid.txt, test.txt
  std::string level = "byte";     // byte | word
  int64_t min_count = 1;          // word level: rarer train words become <unk>
  // model
  std::string arch = "sgsgsc";    // s attention, g top-k MoE, c AC MoE, f dense FFN
  std::string router = "acmoe";   // smoe: every c becomes g; acmoe: arch as given (needs a c);
                                  // xmoe: the c layers keep their gate but route without AC
  int64_t dim = 128, heads = 8, experts = 16, k = 2, expert_hidden = 128, ffn_hidden = 512;
  int64_t seq_len = 256, batch = 8;
  int64_t micro_batch = 0;        // sequences per forward (the AC statistics' batch); 0: the whole batch
  double dropout = 0.0, capacity_factor = 0.0;
  std::string dropout_layout = "residual";  // residual | official
  std::string gate = "linear";     // g layers: linear | cosine | xmoe
  std::string c_gate = "same";     // c layers: same (as --gate) | linear | cosine | xmoe
  std::string activation = "gelu";      // gelu | relu (experts and dense FFN)
  std::string expert_init = "linear";   // linear | official
  std::string moe_residual = "single";  // single | double (post-norm)
  bool attention_bias = true;
  double embedding_std = 0.02;
  bool head_bias = false;
  std::string ac_stat = "mad";     // mad | variance
  double ac_eps = 1e-4, ac_clip = 10.0;
  std::string ac_scaling = "feature";  // feature | global
  std::string ac_small_clusters = "official";  // official | neutral
  std::string ac_rows = "experts";     // experts | largest-index
  int64_t ac_mix = 1;
  bool ac_differentiable = false;
  std::string ac_stats = "local";  // local | global: AC statistics of each rank's batch or of all ranks'
  bool expert_parallel = false;    // with several ranks: each MoE layer's experts split over them
  bool elliptical = false;
  std::string norm = "pre";        // pre | post
  // optimisation
  std::string optimizer = "adam";  // adam | adamw
  double lr = 1e-3, min_lr = 0.0, beta1 = 0.9, beta2 = 0.999, weight_decay = 0.0;
  int64_t warmup = 100;
  bool cosine = false;
  double clip_grad = 1.0;          // max global gradient norm; 0: no clipping
  double balance_coef = 0.01, z_coef = 0.0;
  double c_balance_coef = -1;      // of the c layers' balance loss; < 0: --balance-coef
  // evaluation
  std::string eval = "batch";  // the final evaluation: batch | causal | both (lm_eval.h)
  double attack_rate = 0.025;
  int64_t attack_seed = 2025;
  // the run (these may change when resuming)
  int64_t steps = 1000, seed = 0, threads = 0;  // threads 0: OpenMP's default
  int64_t log_every = 50, eval_every = 200, eval_batches = 20, checkpoint_every = 500;  // 0: never
  std::string out = "runs/lm", device = "cpu";  // device: cpu | cuda
  bool resume = false, overwrite = false;
};

// One option: flag "--<name>" (a bool flag takes no value), JSON key <name>.
struct ConfigField {
  const char* name;
  std::variant<std::string*, int64_t*, double*, bool*> value;
  const char* help;
  bool run_control;  // may differ between a checkpoint and the run resuming it
};

// ---- option tables, shared by the example programs ----
// Sets fields from "--name value", "--flag" and "--no-flag" (bool fields)
// arguments, without the program name; Error naming `program` and the flag on
// an unknown flag, a missing value or a value of the wrong type.
void parse_flags(const std::vector<ConfigField>& fields, const std::vector<std::string>& args, const char* program);
// One line per field: the flag, the kind of value, the help and the current value as default.
std::string flags_usage(const std::vector<ConfigField>& fields);
// The main of a program whose options are `fields`: --help (or -h) prints
// "usage: <usage>" and every flag; otherwise the flags are parsed (`program`
// names it in errors) and run() called. An exception is printed as
// "error: <what>" and gives exit status 1.
int run_program(int argc, char** argv, const char* program, const char* usage, const std::vector<ConfigField>& fields,
                const std::function<void()>& run);
// {name: value} of every field.
nlohmann::json fields_to_json(const std::vector<ConfigField>& fields);
// Error "<program>: --<flag> must be a | b, got '<value>'" unless value is one of allowed.
void check_one_of(const std::string& value, const char* program, const char* flag,
                  std::initializer_list<const char*> allowed);

// The device named by --device: "cpu", or "cuda" (CUDA device 0). Error
// naming program when the name is neither, when this build has no CUDA
// backend, or when no CUDA device is visible.
Device parse_device(const std::string& device, const char* program);

// ---- train_lm's options ----
std::vector<ConfigField> config_fields(LMTrainConfig& config);
nlohmann::json config_to_json(const LMTrainConfig& config);
// parse_flags over the defaults, after the flags of a recipe when the
// arguments name one (--recipe NAME or PATH: see recipe_args).
LMTrainConfig parse_args(const std::vector<std::string>& args);
// The flags of a recipe: a file of flags, one or more per line, `#` comments.
// NAME (no '/', no ".recipe") is found as NAME.recipe in $MOEGRAD_RECIPES,
// ./recipes, the recipes folder beside or above the program's folder, or the
// source tree's recipes/; anything else is a path.
std::vector<std::string> recipe_args(const std::string& name_or_path);
// Every flag with its default and help, one per line.
std::string usage();
// Error naming the option when a value is out of range or unknown.
void validate(const LMTrainConfig& config);
// The architecture actually trained: with router smoe every c becomes g.
std::string effective_arch(const LMTrainConfig& config);
// The learning rate of step (1-based): linear warm-up over `warmup` steps,
// then constant, or with `cosine` a cosine decay to min_lr at `steps`.
double lr_at(const LMTrainConfig& config, int64_t step);
// The global L2 norm of the gradients of params (undefined ones count as
// zeros): NaN or Inf when a gradient is. Error when they are on two devices.
double grad_norm(const std::vector<Tensor>& params);
// Scales the gradients of params in place (no graph) by max_norm / norm when
// norm (their global norm) is finite and above max_norm > 0.
void scale_to_max_norm(const std::vector<Tensor>& params, double norm, double max_norm);
// Both: the norm at most max_norm; returns the norm before scaling.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// What a checkpoint's metadata says, checked against the run resuming it.
// The "format" of train_lm's checkpoints.
inline constexpr const char* kCheckpointFormat = "moegrad-lm-checkpoint-1";
// A JSON object of a checkpoint's metadata (`key` and `where` name it in
// errors); Error unless it is an object nested at most 16 levels deep.
nlohmann::json parse_metadata_json(const std::string& text, const char* key, const std::string& where);

// A checkpoint's metadata entry; Error naming `where` when it is missing.
const std::string& checkpoint_entry(const std::map<std::string, std::string>& metadata, const char* key,
                                    const std::string& where);
// The step of a train_lm checkpoint; Error unless its format is train_lm's
// and its step a step number.
int64_t checkpoint_step(const std::map<std::string, std::string>& metadata, const std::string& where);

struct CheckpointMetadata {
  int64_t step = 0;
  std::vector<std::pair<uint64_t, uint64_t>> generator_states;  // (seed, offset), in the order asked for
};
// Reads the metadata of a train_lm checkpoint (`where` names it in errors):
// its format, the options that may not change on resume (an Error lists every
// one that differs from config), the vocabulary (must be tokenizer's), the
// step (at most config.steps) and the state of every generator named in
// `generators`. Anything missing or malformed is an Error.
CheckpointMetadata read_checkpoint_metadata(const std::map<std::string, std::string>& metadata,
                                            const LMTrainConfig& config, const data::Tokenizer& tokenizer,
                                            const std::vector<std::string>& generators, const std::string& where);


struct StepRecord {
  int64_t step = 0;
  double loss = 0;       // the language-model cross-entropy of the batch
  double lr = 0, grad_norm = 0;
};

struct FinalReport {
  // (name, result) in order: "valid", "valid_attacked", "test", "test_attacked"
  // (batch evaluation), then the same with "_causal" (causal evaluation), as --eval asks
  std::vector<std::pair<std::string, EvalResult>> results;
  const EvalResult& at(const std::string& name) const;
  double tokens_per_second = 0;  // training tokens (of all ranks) over training time
};

class LMTrainer {
 public:
  // Reads and tokenizes the data, applies the attack to valid/test, builds the
  // model and optimizer, and with config.resume loads <out>/checkpoint.safetensors.
  // log: progress and eval lines (nullptr: quiet). comm: the ranks training
  // together, data parallel (nullptr: this process alone); on ranks other
  // than 0 the trainer is quiet and writes no files. A resumed run reads the
  // checkpoint on every rank (the output folder must be shared, or copied).
  // The constructor communicates nothing: wrap it in dist::run_on_all_or_fail.
  explicit LMTrainer(const LMTrainConfig& config, std::FILE* log = stderr, dist::CommPtr comm = nullptr);

  // Trains from step()+1 to `until` (<= 0: config.steps), evaluating and
  // checkpointing on schedule and always checkpointing at config.steps.
  // Error naming the step when the loss or the gradient norm is not finite
  // (the last checkpoint is kept as it was).
  void train(int64_t until = 0);
  // Loss over the first max_batches (<= 0: all) eval batches of "valid" or
  // "test", batch or causal (lm_eval.h); progress (may be null) per batch.
  EvalResult evaluate(const std::string& split, bool attacked, int64_t max_batches, EvalMode mode = EvalMode::Batch,
                      data::Progress* progress = nullptr);
  // Full evaluation of valid and test, clean and attacked, batch and/or
  // causal as --eval says; written to the metrics.
  FinalReport final_report();

  // Rank 0 writes the checkpoint; under expert parallelism every rank must
  // call it (rank 0 gathers the experts' shards, their optimizer state and
  // every rank's generators), so the file is the one-process model's.
  void save_checkpoint();
  // Whether this rank evaluates: rank 0, and under expert parallelism every
  // rank (each forward needs every rank's experts: all evaluate the same batches).
  bool evaluates_here() const { return comm_->rank() == 0 || expert_parallel_; }
  std::string checkpoint_path() const;
  std::string metrics_path() const;
  int64_t step() const { return step_; }
  // The steps trained by this object, in order.
  const std::vector<StepRecord>& history() const { return history_; }
  TransformerLM& model() { return *model_; }
  const data::Tokenizer& tokenizer() const { return *tokenizer_; }
  const LMTrainConfig& config() const { return config_; }
  const char* metric_name() const;  // "bits/byte" or "perplexity"

 private:
  void load_checkpoint(const std::string& path);
  // "batch", then "model.<name>" for each of the model's generators (dropout).
  std::vector<std::pair<std::string, Generator*>> named_generators();
  // Gradients of the global batch's mean loss: the replicated parameters'
  // averaged over the ranks, the expert shards' (every rank's tokens for
  // this rank's experts, summed by the all-to-all's backward) divided by N.
  void average_gradients();
  // clip_grad_norm over the whole model: under expert parallelism every
  // rank's shards count; returns the norm before clipping.
  double clip_gradients();
  // The forwards and backwards of one step (one per micro-batch, gradients
  // summed); returns the batch's language-model loss.
  double train_forward_backward(const data::Batch& batch, int64_t step);
  // Error naming the step when value (the loss, the gradient norm) is not finite.
  void stop_unless_finite(double value, const char* what, int64_t step) const;
  void log(const std::string& line);
  nlohmann::json eval_json(const EvalResult& r) const;
  bool is_ac_layer(int64_t pos) const;
  // Per AC layer: empty and single-token clusters and the mean token weight, per forward.
  nlohmann::json ac_diagnostics_json(const std::vector<std::pair<int64_t, RoutingStats>>& routing) const;
  std::string ac_diagnostics_line(const std::vector<std::pair<int64_t, RoutingStats>>& routing) const;

  LMTrainConfig config_;
  std::FILE* log_;
  std::unique_ptr<data::Tokenizer> tokenizer_;
  data::TextCorpus corpus_;
  EvalSplits eval_;
  std::shared_ptr<TransformerLM> model_;
  std::unique_ptr<Optimizer> optimizer_;
  Device device_;  // of the model, the optimizer state and each batch while it is used
  Generator batch_gen_;
  dist::CommPtr comm_;
  int64_t first_row_ = 0, local_batch_ = 0;  // this rank's rows of each global batch
  // Expert parallelism (--expert-parallel with several ranks). shards_[i]:
  // optimizer parameter i is rows [first, first + rows) of a one-process
  // expert tensor (sharded), or the whole parameter, the same on every rank.
  struct Shard {
    bool sharded = false;
    int64_t first = 0, rows = 0;
  };
  bool expert_parallel_ = false;
  std::vector<Shard> shards_;
  // the optimizer's parameters split by shards_: the same on every rank, or this rank's experts
  std::vector<Tensor> replicated_params_, expert_params_;
  bool parameters_synced_ = false;  // rank 0's parameters broadcast (at the first train(); the
                                    // constructor communicates nothing, so that it may fail on one rank)
  int64_t step_ = 0;
  std::vector<StepRecord> history_;
  std::unique_ptr<data::MetricsWriter> metrics_;
  data::Progress* progress_ = nullptr;  // while train() runs
  double train_seconds_ = 0;
  int64_t train_tokens_ = 0;
  std::vector<std::pair<int64_t, RoutingStats>> window_routing_;  // summed over the training forwards
  int64_t window_forwards_ = 0;                                    // since the last train record
};

}  // namespace moegrad::lm
