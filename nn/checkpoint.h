// Module checkpoints: a module's parameters by their hierarchical names
// (Module::named_parameters, "blocks.2.moe.router.weight"), saved to and loaded
// from safetensors files.
#pragma once
#include <map>
#include <string>

#include "nn/module.h"
#include "nn/safetensors.h"

namespace moegrad {

// The module's parameters by name (the parameter tensors themselves, sharing
// their storage).
TensorMap module_state(const Module& m);

// Copies tensors into the module's parameters by name, in place, converting
// between float32 and float64 when needed. Everything is checked before any
// parameter is written, so on Error the module is unchanged. Errors: a
// parameter missing from the map (unless allow_missing), a name that is no
// parameter (unless allow_unexpected), a shape mismatch (naming the parameter
// and both shapes), a non-float tensor for a float parameter.
void load_module_state(Module& m, const TensorMap& tensors, bool allow_missing = false,
                       bool allow_unexpected = false);

void save_module(const std::string& path, const Module& m, const std::map<std::string, std::string>& metadata = {});
// Loads a file written by save_module (strict: no missing or unexpected names).
void load_module(const std::string& path, Module& m);

}  // namespace moegrad
