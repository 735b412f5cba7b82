// Module checkpoints: parameters by name to and from safetensors. Loading
// checks every name, shape and dtype first and only then copies, so a bad
// checkpoint leaves the module as it was.
#include "nn/checkpoint.h"

namespace moegrad {

TensorMap module_state(const Module& m) {
  TensorMap out;
  for (const auto& [name, p] : m.named_parameters())
    MG_CHECK(out.emplace(name, p).second, "module_state: parameter name '", name, "' appears twice");
  return out;
}

void load_module_state(Module& m, const TensorMap& tensors, bool allow_missing, bool allow_unexpected) {
  const TensorMap params = module_state(m);
  std::vector<std::pair<Tensor, Tensor>> copies;  // (parameter, source)
  for (const auto& [name, p] : params) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      MG_CHECK(allow_missing, "load_module_state: parameter '", name, "' is missing from the checkpoint");
      continue;
    }
    const Tensor& src = it->second;
    MG_CHECK(src.defined(), "load_module_state: tensor '", name, "' is undefined");
    MG_CHECK(src.shape() == p.shape(), "load_module_state: parameter '", name, "' has shape ", shape_str(p.shape()),
             ", the checkpoint has ", shape_str(src.shape()));
    MG_CHECK(src.dtype() == p.dtype() || (is_floating(src.dtype()) && is_floating(p.dtype())),
             "load_module_state: parameter '", name, "' is ", dtype_name(p.dtype()), ", the checkpoint has ",
             dtype_name(src.dtype()));
    copies.emplace_back(p, src);
  }
  if (!allow_unexpected)
    for (const auto& [name, t] : tensors)
      MG_CHECK(params.count(name), "load_module_state: the checkpoint has '", name, "', which is no parameter");
  for (auto& [p, src] : copies) p.copy_(src);
}

void save_module(const std::string& path, const Module& m, const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, module_state(m), metadata);
}

void load_module(const std::string& path, Module& m) {
  const SafetensorsFile file = load_safetensors(path);
  try {
    load_module_state(m, file.tensors);
  } catch (const Error& e) {
    throw Error(detail::cat("load_module: '", path, "': ", e.what()));
  }
}

}  // namespace moegrad
