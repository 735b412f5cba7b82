// Module: parameter registry and tree walks.
#include "nn/module.h"

namespace moegrad {

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  MG_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module::register_parameter: invalid name '",
           name, "'");
  for (auto& [n, p] : params_) MG_CHECK(n != name, "Module::register_parameter: '", name, "' registered twice");
  t.requires_grad_();
  params_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  MG_CHECK(m, "Module::register_module: '", name, "' is null");
  MG_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module::register_module: invalid name '", name,
           "'");
  for (auto& [n, c] : children_) MG_CHECK(n != name, "Module::register_module: '", name, "' registered twice");
  children_.emplace_back(name, std::move(m));
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out = params_;
  for (auto& [name, child] : children_)
    for (auto& [sub, p] : child->named_parameters()) out.emplace_back(name + "." + sub, p);
  return out;
}

void Module::register_generator(const std::string& name, Generator* gen) {
  MG_CHECK(gen && !name.empty() && name.find('.') == std::string::npos, "Module::register_generator: invalid name '",
           name, "'");
  generators_.emplace_back(name, gen);
}

std::vector<std::pair<std::string, Generator*>> Module::named_generators() const {
  std::vector<std::pair<std::string, Generator*>> out = generators_;
  for (auto& [name, child] : children_)
    for (auto& [sub, g] : child->named_generators()) out.emplace_back(name + "." + sub, g);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, p] : named_parameters()) out.push_back(p);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, p] : named_parameters()) n += p.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (auto& [name, p] : named_parameters()) p.zero_grad();
}

}  // namespace moegrad
