// Optimizers: SGD (momentum, weight decay), Adam and AdamW. Each holds a list
// of parameter tensors (float leaves, on the CPU or a CUDA device: the fused
// kernels of cuda/optim.h) and, on step(), updates every
// parameter that has a gradient in place, without recording a graph. The state
// (per-parameter step count and buffers such as Adam's m and v) is allocated
// once, at a parameter's first update, and is exposed for checkpoints.
//
//   Adam opt(model_params, AdamOptions{3e-4});
//   for (...) { opt.zero_grad(); loss(...).backward(); opt.step(); }
#pragma once
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace moegrad {

// What an optimizer keeps for one parameter.
struct ParamState {
  int64_t step = 0;             // updates applied to this parameter so far
  std::vector<Tensor> buffers;  // named by Optimizer::buffer_names(); empty until the first update
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Updates every parameter whose grad() is defined; the others are skipped.
  void step();
  // Sets every parameter's gradient to undefined (the next backward writes a
  // fresh one, taken from the caching allocator).
  void zero_grad();

  const std::vector<Tensor>& params() const { return params_; }
  double lr() const { return lr_; }
  // For schedules: any finite lr >= 0 (0 is allowed for a warm-up's first step).
  void set_lr(double lr);

  // Checkpoint access: state()[i] belongs to params()[i]; buffer_names() says
  // what its buffers are (SGD: "momentum" when momentum > 0; Adam: "m", "v").
  const std::vector<std::string>& buffer_names() const { return buffer_names_; }
  const std::vector<ParamState>& state() const { return state_; }
  // Replaces the state, e.g. from a checkpoint: one entry per parameter, each
  // with no buffers (not yet updated) or with one buffer per name, of the
  // parameter's shape and dtype, on any device. The values are copied onto the
  // parameter's device.
  void load_state(const std::vector<ParamState>& state);

 protected:
  Optimizer(std::vector<Tensor> params, double lr, std::vector<std::string> buffer_names, const char* name);
  // Applies one update to a contiguous parameter `param` with a contiguous
  // gradient `grad` of the same dtype; st.step has already been incremented.
  virtual void update(const Tensor& param, const Tensor& grad, ParamState& st) = 0;

  const char* name_;
  double lr_;

 private:
  std::vector<Tensor> params_;
  std::vector<std::string> buffer_names_;
  std::vector<ParamState> state_;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;      // in [0, 1); 0 keeps no buffer
  double weight_decay = 0.0;  // L2 penalty added to the gradient
};

// g = grad + weight_decay * p; with momentum: buf = g at the first update,
// buf = momentum * buf + g after it, and g = buf; then p -= lr * g.
class SGD : public Optimizer {
 public:
  explicit SGD(std::vector<Tensor> params, SGDOptions options = SGDOptions());
  const SGDOptions& options() const { return options_; }

 protected:
  void update(const Tensor& param, const Tensor& grad, ParamState& st) override;

 private:
  SGDOptions options_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;  // each in [0, 1)
  double eps = 1e-8;                  // > 0
  double weight_decay = 0.0;          // >= 0
};

// Adam (Kingma & Ba) with bias correction, at update t of a parameter:
//   g = grad (+ weight_decay * p for Adam: L2 in the gradient)
//   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
//   p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
// AdamW (Loshchilov & Hutter) instead decays the weights directly, before the
// step above: p -= lr * weight_decay * p.
class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Tensor> params, AdamOptions options = AdamOptions());
  const AdamOptions& options() const { return options_; }

 protected:
  Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled, const char* name);
  void update(const Tensor& param, const Tensor& grad, ParamState& st) override;

 private:
  AdamOptions options_;
  bool decoupled_;  // AdamW
};

class AdamW : public Adam {
 public:
  // The default weight decay is 0.01, as in PyTorch.
  explicit AdamW(std::vector<Tensor> params, AdamOptions options = AdamOptions{1e-3, 0.9, 0.999, 1e-8, 0.01});
};

}  // namespace moegrad
