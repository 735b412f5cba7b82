// Fuzz target for the checkpoint metadata that train_lm --resume trusts
// (read_checkpoint_metadata in examples/common/lm_trainer.cpp): the format,
// the options, the vocabulary, the step and the generator states. The input
// is the metadata as NUL-separated key, value, key, value... It is checked
// against the run of `train_lm --level word` (defaults otherwise) on the text
// "the lord said unto moses", as tests/fuzz/make_corpus.py trains it for the
// seeds. Every input gives the metadata or a moegrad::Error; what is read
// has a step within --steps and one state per generator asked for.
#include <algorithm>
#include <map>

#include "examples/common/lm_trainer.h"
#include "fuzz_support.h"

using namespace moegrad;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lm::LMTrainConfig config = lm::parse_args({"--level", "word"});
  static const data::WordTokenizer tokenizer = data::WordTokenizer::build("the lord said unto moses\n");
  static const std::vector<std::string> generators = {"batch", "model.drop.gen", "model.layers.0.attn.drop.gen"};

  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> fields;  // key, value, key, value, ...
  for (size_t pos = 0; pos <= text.size();) {
    const size_t end = std::min(text.find('\0', pos), text.size());
    fields.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  std::map<std::string, std::string> metadata;
  for (size_t i = 0; i + 1 < fields.size(); i += 2) metadata[fields[i]] = fields[i + 1];
  try {
    const lm::CheckpointMetadata m =
        lm::read_checkpoint_metadata(metadata, config, tokenizer, generators, "the fuzzed checkpoint");
    FUZZ_EXPECT(m.step >= 0 && m.step <= config.steps, "step ", m.step, " outside [0, ", config.steps, "]");
    FUZZ_EXPECT(m.generator_states.size() == generators.size(), m.generator_states.size(), " generator states");
  } catch (const Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
