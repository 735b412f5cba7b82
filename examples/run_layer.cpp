// examples/run_layer: runs one moegrad layer forward and backward so you can
// compare your own implementation (e.g. in PyTorch) with moegrad's.
//
//   run_layer CONFIG.json INPUTS.safetensors OUTPUTS.safetensors
//
// CONFIG names the layer and its settings; INPUTS holds the layer's inputs,
// parameters ("param.<name>") and upstream gradients ("grad_in.<output>");
// OUTPUTS receives the outputs ("out.<name>"), the parameters used and every
// gradient ("grad.<input>", "grad.param.<name>"). Keys and names:
// docs/run_layer.md. Prints one summary line;
// on a bad argument, config or input prints the error to stderr, writes
// nothing and exits with 1 (2 for a wrong command line).
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "examples/common/layer_runner.h"

using namespace moegrad;

namespace {

nlohmann::json read_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MG_CHECK(f, "run_layer: cannot open config '", path, "'");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  MG_CHECK(!f.bad(), "run_layer: cannot read config '", path, "'");
  return examples::parse_config(text, path);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr,
                 "usage: run_layer CONFIG.json INPUTS.safetensors OUTPUTS.safetensors\n"
                 "Runs one layer forward and backward; config keys and tensor names: docs/run_layer.md.\n");
    return 2;
  }
  try {
    const nlohmann::json config = read_config(argv[1]);
    const SafetensorsFile inputs = load_safetensors(argv[2]);
    const TensorMap outputs = examples::run_layer(config, inputs.tensors);
    save_safetensors(argv[3], outputs, {{"config", config.dump()}});
    int outs = 0, grads = 0;
    for (auto& [name, t] : outputs) outs += name.rfind("out.", 0) == 0, grads += name.rfind("grad.", 0) == 0;
    std::printf("run_layer: %s (%s): read %zu tensors, wrote %d outputs and %d gradients to %s\n",
                config["layer"].get<std::string>().c_str(), config.value("dtype", "float32").c_str(),
                inputs.tensors.size(), outs, grads, argv[3]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
