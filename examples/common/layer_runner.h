// Runs one moegrad layer forward and backward from a JSON config and named
// tensors, so that a user (e.g. with PyTorch) can compare their own
// implementation with moegrad's outputs and gradients. examples/run_layer is
// the command-line front end; docs/run_layer.md documents every config key
// and tensor name.
//
// Tensor names. In: the layer's inputs ("x", and "prev_values",
// "prev_indices", "prev_logits" where the layer takes them), its parameters
// "param.<name>" (names as Module::named_parameters), and upstream gradients
// "grad_in.<output>". Out: "out.<output>", the parameters used
// "param.<name>", and a gradient for every float input and every parameter,
// "grad.<input>" and "grad.param.<name>" (zeros where no gradient flows).
//
// The backward runs from Σ_o sum(out_o ⊙ grad_in.o) over the outputs given an
// upstream gradient, which is the gradient each grad_in.o asks for.
//
// Every bad config (unknown layer, unknown or unused key, wrong JSON type,
// missing required key, bad value) and every bad input (missing, unexpected,
// wrong dtype or shape, index out of range) is a moegrad::Error naming the
// key or tensor.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include "nn/safetensors.h"

namespace moegrad::examples {

// The config from its JSON text (`name`, e.g. its path, is named in errors):
// Error when the text is not JSON or nests deeper than any config does.
nlohmann::json parse_config(const std::string& text, const std::string& name);

TensorMap run_layer(const nlohmann::json& config, const TensorMap& inputs);

}  // namespace moegrad::examples
