// Module: the base of every layer. It owns named parameters and child modules;
// named_parameters() walks the tree and joins names with '.', giving the names
// checkpoints use ("blocks.2.moe.router.weight"). Subclasses register their
// parameters and children in the constructor and define their own forward.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"

namespace moegrad {

// dtype and random source for a module's parameters.
struct InitOptions {
  DType dtype = DType::Float32;
  Generator* gen = nullptr;  // default_generator() when null
  Generator& generator() const { return gen ? *gen : default_generator(); }
};

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;
  // Random generators owned by this module and its children (dropout), by the
  // same dotted names, so a checkpoint can save and restore their state.
  std::vector<std::pair<std::string, Generator*>> named_generators() const;
  // Switches training mode (dropout, capacity dropping) here and in children.
  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }
  void zero_grad();

  // Moves every parameter of this module and its children, and its gradient
  // when it has one, to `device`, in place: the TensorImpl each parameter
  // handle shares gets the new storage (contiguous), so the Tensor members
  // the layers keep (Linear::weight, ...) follow, and requires_grad stays as
  // it was. Parameters already on `device` are left alone. Call it before
  // building an optimizer: an optimizer's state stays where it was made.
  // Error when `device` is not available (no CUDA backend, no such GPU).
  void to(Device device);
  // The device of the parameters (the CPU for a module without any); Error
  // when they are on different devices.
  Device device() const;

 protected:
  // Registers t as a leaf parameter that requires grad; returns it.
  Tensor register_parameter(const std::string& name, Tensor t);
  void register_generator(const std::string& name, Generator* gen);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Generator*>> generators_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// A module that only holds children named "0", "1", ... (checkpoint names
// like "layers.3.moe.w1").
class ModuleList : public Module {
 public:
  template <typename M>
  std::shared_ptr<M> append(std::shared_ptr<M> m) {
    return register_module(std::to_string(size_++), std::move(m));
  }
  int64_t size() const { return size_; }

 private:
  int64_t size_ = 0;
};

}  // namespace moegrad
