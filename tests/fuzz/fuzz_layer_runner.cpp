// Fuzz target for run_layer's JSON config (examples/common/layer_runner.cpp).
// The input is the config text, optionally followed by a NUL byte and a JSON
// object {tensor name: shape} of the input tensors to pass (at most 4096
// elements in all; "prev_indices" is int64 with values 0..3, every other
// tensor has the config's float dtype and fixed values in [-1, 1]). The config
// goes through parse_config and run_layer, as in examples/run_layer; every
// config and every set of inputs gives the layer's outputs or a moegrad::Error.
#include <nlohmann/json.hpp>

#include "examples/common/layer_runner.h"
#include "fuzz_support.h"

using namespace moegrad;
using nlohmann::json;

namespace {

constexpr int64_t kMaxElements = 4096;

// The tensors the spec asks for; false when it is no object of small shapes.
bool make_inputs(const json& spec, DType dtype, TensorMap& out) {
  if (!spec.is_object()) return false;
  int64_t total = 0;
  for (const auto& [name, shape_json] : spec.items()) {
    if (!shape_json.is_array() || shape_json.size() > 4) return false;
    Shape shape;
    int64_t numel = 1;
    for (const json& d : shape_json) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(kMaxElements)) return false;
      shape.push_back(d.get<int64_t>());
      numel *= shape.back();
    }
    total += numel;
    if (total > kMaxElements) return false;
    const bool indices = name == "prev_indices";
    Tensor t = Tensor::empty(shape, indices ? DType::Int64 : dtype);
    for (int64_t i = 0; i < numel; ++i) {
      const double v = indices ? static_cast<double>(i % 4) : static_cast<double>((i * 37 + 11) % 64) / 32.0 - 1.0;
      if (indices)
        t.data<int64_t>()[i] = static_cast<int64_t>(v);
      else if (dtype == DType::Float64)
        t.data<double>()[i] = v;
      else
        t.data<float>()[i] = static_cast<float>(v);
    }
    out[name] = t;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const size_t nul = text.find('\0');
  json config;
  try {
    config = examples::parse_config(text.substr(0, nul), "fuzz");
  } catch (const Error& e) {
    fuzz::rejected(e);
    return 0;
  }
  const json spec = nul == std::string::npos ? json{{"x", {2, 4}}}
                                             : json::parse(text.substr(nul + 1), nullptr, false);
  const DType dtype = config.is_object() && config.value("dtype", json()) == "float64" ? DType::Float64
                                                                                       : DType::Float32;
  TensorMap inputs;
  if (!make_inputs(spec, dtype, inputs)) return 0;
  try {
    const TensorMap outputs = examples::run_layer(config, inputs);
    FUZZ_EXPECT(!outputs.empty(), "run_layer returned nothing");
  } catch (const Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
