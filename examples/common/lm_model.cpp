// The model of train_lm's options, and loading a trained one (see lm_model.h).
#include "examples/common/lm_model.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "nn/checkpoint.h"

namespace moegrad::lm {
using nlohmann::json;

LMConfig model_config(const LMTrainConfig& c, int64_t vocab) {
  LMConfig mc;
  mc.vocab = vocab;
  mc.max_len = c.seq_len;
  mc.arch = effective_arch(c);
  mc.embedding_std = c.embedding_std, mc.head_bias = c.head_bias;
  BlockConfig& b = mc.block;
  b.dim = c.dim, b.heads = c.heads, b.ffn_hidden = c.ffn_hidden;
  b.elliptical = c.elliptical, b.pre_norm = c.norm == "pre", b.dropout = c.dropout;
  b.dropout_layout = c.dropout_layout == "official" ? DropoutLayout::Official : DropoutLayout::Residual;
  b.moe_double_residual = c.moe_residual == "double";
  b.attention_bias = c.attention_bias;
  b.activation = c.activation == "relu" ? Activation::Relu : Activation::Gelu;
  b.moe.hidden = c.expert_hidden, b.moe.experts = c.experts, b.moe.k = c.k;
  b.moe.expert = ExpertOptions{b.activation, 0.0, c.expert_init == "official" ? ExpertInit::Official : ExpertInit::Linear};
  // xmoe: the cosine gate started orthogonal (gain 0.32) and rescaled to norm 1.5, as the paper's code
  auto set_gate = [](const std::string& g, GateKind& kind, double& gain, double& norm) {
    kind = g == "linear" ? GateKind::Linear : GateKind::Cosine;
    gain = g == "xmoe" ? 0.32 : 0.0, norm = g == "xmoe" ? 1.5 : 0.0;
  };
  set_gate(c.gate, b.moe.gate, b.moe.embedding_gain, b.moe.embedding_norm);
  if (c.c_gate != "same") {
    b.c_gate = GateKind::Linear;
    set_gate(c.c_gate, *b.c_gate, b.c_embedding_gain, b.c_embedding_norm);
  }
  b.c_use_ac = c.router != "xmoe";
  b.moe.capacity_factor = c.capacity_factor;
  b.moe.ac.stats = ACOptions{c.ac_stat == "variance" ? ACStat::Variance : ACStat::MAD, c.ac_eps, c.ac_clip,
                             c.ac_scaling == "global" ? ACScaling::Global : ACScaling::PerFeature,
                             c.ac_small_clusters == "neutral" ? ACSmallClusters::Neutral : ACSmallClusters::Official,
                             c.ac_rows == "largest-index" ? ACTableRows::LargestIndex : ACTableRows::Experts};
  b.moe.ac.mix_m = c.ac_mix;
  b.moe.ac.differentiable = c.ac_differentiable;
  return mc;
}

LMTrainConfig config_from_json(const json& j, const std::string& where) {
  MG_CHECK(j.is_object(), where, ": the options are not a JSON object");
  LMTrainConfig c;
  const std::vector<ConfigField> fields = config_fields(c);
  for (auto item = j.begin(); item != j.end(); ++item) {
    // Named copies: a lambda cannot capture a structured binding in C++17.
    const std::string& key = item.key();
    const json& value = item.value();
    auto f = std::find_if(fields.begin(), fields.end(), [&](const ConfigField& x) { return key == x.name; });
    MG_CHECK(f != fields.end(), where, ": unknown option '", key, "'");
    std::visit(
        [&](auto* v) {
          using T = std::remove_pointer_t<decltype(v)>;
          const bool ok = std::is_same_v<T, bool>          ? value.is_boolean()
                          : std::is_same_v<T, std::string> ? value.is_string()
                          : std::is_same_v<T, int64_t>     ? value.is_number_integer()
                                                           : value.is_number();
          MG_CHECK(ok, where, ": option '", key, "' has the wrong type");
          *v = value.get<T>();
        },
        f->value);
  }
  return c;
}

// Error unless the checkpoint holds `name` of shape `want`: the big
// tensors are checked before the model is built, so options that do not
// match the file cannot make it allocate more than the file holds.
static void expect_tensor(const SafetensorsFile& file, const std::string& name, const Shape& want,
                          const std::string& where) {
  auto it = file.tensors.find("model." + name);
  MG_CHECK(it != file.tensors.end(), where, ": tensor 'model.", name, "' is missing");
  MG_CHECK(it->second.shape() == want, where, ": tensor 'model.", name, "' is ", shape_str(it->second.shape()),
           ", but its options make it ", shape_str(want));
}

TrainedLM load_trained_lm(const std::string& path, Device device) {
  const SafetensorsFile file = load_safetensors(path);
  const std::string where = "checkpoint " + path;
  TrainedLM lm;
  lm.step = checkpoint_step(file.metadata, where);
  lm.config = config_from_json(parse_metadata_json(checkpoint_entry(file.metadata, "config", where), "config", where),
                               where);
  lm.config.device = device.is_cuda() ? "cuda" : "cpu", lm.config.resume = false;
  try {
    validate(lm.config);
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  lm.tokenizer = data::load_tokenizer(checkpoint_entry(file.metadata, "vocab", where));
  const LMTrainConfig& c = lm.config;
  expect_tensor(file, "tokens.weight", {lm.tokenizer->vocab_size(), c.dim}, where);
  expect_tensor(file, "positions.weight", {c.seq_len, c.dim}, where);
  const std::string arch = effective_arch(c);
  for (size_t l = 0; l < arch.size(); ++l) {
    const std::string layer = "layers." + std::to_string(l) + ".";
    if (arch[l] == 'g' || arch[l] == 'c')
      expect_tensor(file, layer + "moe.experts.w1", {c.experts, c.expert_hidden, c.dim}, where);
    if (arch[l] == 'f') expect_tensor(file, layer + "ffn.fc1.weight", {c.ffn_hidden, c.dim}, where);
  }
  Generator init(0);  // the weights come from the file
  lm.model = std::make_shared<TransformerLM>(model_config(c, lm.tokenizer->vocab_size()),
                                             InitOptions{DType::Float32, &init});
  TensorMap params;
  for (const auto& [name, t] : file.tensors)
    if (name.rfind("model.", 0) == 0) params[name.substr(6)] = t;
  try {
    load_module_state(*lm.model, params);
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  lm.model->to(device);
  lm.model->eval();
  return lm;
}

}  // namespace moegrad::lm
