// The language model that train_lm's options describe, and loading a trained
// one from train_lm's checkpoint, for train_lm and the evaluate_lm and
// generate programs.
#pragma once
#include <memory>
#include <string>

#include "examples/common/lm_trainer.h"

namespace moegrad::lm {

// The model train_lm builds from its options, for a vocabulary of `vocab`.
LMConfig model_config(const LMTrainConfig& config, int64_t vocab);

// Options from their JSON form (a checkpoint's "config"): each key must be an
// option of the right type (Error naming `where` and the key); options the
// JSON lacks keep their defaults.
LMTrainConfig config_from_json(const nlohmann::json& j, const std::string& where);

struct TrainedLM {
  LMTrainConfig config;                        // the options it was trained with
  std::unique_ptr<data::Tokenizer> tokenizer;  // its vocabulary
  std::shared_ptr<TransformerLM> model;        // on the device asked for, in eval mode
  int64_t step = 0;
};
// Loads train_lm's checkpoint at path onto device; Error naming the file
// when it is not a train_lm checkpoint or does not match its own options.
TrainedLM load_trained_lm(const std::string& path, Device device);

}  // namespace moegrad::lm
