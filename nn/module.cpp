// Module: parameter registry and tree walks.
#include "nn/module.h"

#include "autograd/node.h"

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
  MG_CHECK(gen, "Module::register_generator: '", name, "' is null");
  MG_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module::register_generator: invalid name '", name,
           "'");
  for (auto& [n, g] : generators_) MG_CHECK(n != name, "Module::register_generator: '", name, "' registered twice");
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

void Module::to(Device device) {
  NoGradGuard no_grad;
  // Copy everything first, so that a failed copy (out of memory) leaves no
  // parameter half moved.
  struct Move {
    TensorImpl* impl;
    Tensor moved;
  };
  std::vector<Move> moves;
  auto plan = [&](const Tensor& t) {
    if (t.device() == device) return;
    Tensor moved = Tensor::empty(t.shape(), t.dtype(), device);  // checks that device is available
    moved.copy_(t);
    moves.push_back({t.impl(), moved});
  };
  for (auto& [name, p] : named_parameters()) {
    plan(p);
    if (p.impl()->grad) plan(Tensor(p.impl()->grad));
  }
  for (Move& m : moves) {
    m.impl->storage = m.moved.storage();
    m.impl->strides = m.moved.strides();
    m.impl->offset = m.moved.offset();
  }
}

Device Module::device() const {
  const auto params = named_parameters();
  if (params.empty()) return Device::cpu();
  const Device d = params.front().second.device();
  for (auto& [name, p] : params)
    MG_CHECK(p.device() == d, "Module::device: parameter '", name, "' is on ", p.device().str(), ", '",
             params.front().first, "' on ", d.str());
  return d;
}

void Module::zero_grad() {
  for (auto& [name, p] : named_parameters()) p.zero_grad();
}

}  // namespace moegrad
