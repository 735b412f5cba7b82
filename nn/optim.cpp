// SGD, Adam and AdamW (see optim.h). step() validates nothing per element: the
// parameters were checked once in the constructor, gradients are brought to
// the parameter's dtype and a contiguous layout, and each update is one flat
// parallel loop over the parameter, its gradient and its state buffers. After
// a parameter's first update, step() allocates nothing. Parameters on a CUDA
// device are updated by the fused kernels of cuda/optim.h, with their state
// on the same device.
#include "nn/optim.h"

#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "cuda/optim.h"
#include "tensor/backend.h"
#include "tensor/parallel.h"

namespace moegrad {

namespace {

// Elements per thread below which an update loop stays on one thread.
constexpr int64_t kUpdateGrain = kParallelGrain / 4;

void check_option(bool ok, double got, const char* name, const char* option, const char* expected) {
  MG_CHECK(ok && std::isfinite(got), name, ": ", option, " must be ", expected, ", got ", got);
}

std::vector<std::string> sgd_buffers(const SGDOptions& o) {
  return o.momentum > 0 ? std::vector<std::string>{"momentum"} : std::vector<std::string>{};
}

}  // namespace

Optimizer::Optimizer(std::vector<Tensor> params, double lr, std::vector<std::string> buffer_names, const char* name)
    : name_(name), lr_(lr), params_(std::move(params)), buffer_names_(std::move(buffer_names)) {
  check_option(lr > 0, lr, name, "lr", "> 0");
  MG_CHECK(!params_.empty(), name, ": got an empty parameter list");
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    MG_CHECK(p.defined(), name, ": parameter ", i, " is an undefined tensor");
    MG_CHECK(is_floating(p.dtype()), name, ": parameter ", i, " must be float32 or float64, got ",
             dtype_name(p.dtype()), " of shape ", shape_str(p.shape()));
    MG_CHECK(p.is_leaf(), name, ": parameter ", i, " of shape ", shape_str(p.shape()),
             " is not a leaf (it was computed by an op); optimize the leaf tensors it came from");
    MG_CHECK(p.is_contiguous(), name, ": parameter ", i, " of shape ", shape_str(p.shape()),
             " is not contiguous; pass a contiguous tensor");
    for (size_t j = 0; j < i; ++j)
      MG_CHECK(!params_[j].same(p), name, ": parameter ", i, " is the same tensor as parameter ", j);
  }
  state_.resize(params_.size());
}

void Optimizer::set_lr(double lr) { check_option(lr >= 0, lr, name_, "lr", ">= 0"); lr_ = lr; }

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    MG_CHECK(g.device() == p.device(), name_, ": gradient of parameter ", i, " is on ", g.device().str(),
             ", the parameter on ", p.device().str());
    // Backward always leaves a contiguous gradient of p's dtype; set_grad may not.
    if (g.dtype() != p.dtype()) g = g.to(p.dtype());
    g = contiguous(g);
    ParamState& st = state_[i];
    if (st.buffers.empty())
      for (size_t k = 0; k < buffer_names_.size(); ++k)
        st.buffers.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    for (size_t k = 0; k < st.buffers.size(); ++k)  // a module moved after the optimizer's first step
      MG_CHECK(st.buffers[k].device() == p.device(), name_, ": state '", buffer_names_[k], "' of parameter ", i,
               " is on ", st.buffers[k].device().str(), ", the parameter on ", p.device().str(),
               "; build the optimizer after Module::to");
    st.step++;
    update(p, g, st);
  }
}

void Optimizer::load_state(const std::vector<ParamState>& state) {
  MG_CHECK(state.size() == params_.size(), name_, ": load_state got ", state.size(), " entries for ",
           params_.size(), " parameters");
  for (size_t i = 0; i < state.size(); ++i) {
    const ParamState& st = state[i];
    const Tensor& p = params_[i];
    MG_CHECK(st.step >= 0, name_, ": load_state: parameter ", i, " has a negative step count ", st.step);
    MG_CHECK(st.buffers.size() == buffer_names_.size() || (st.buffers.empty() && st.step == 0), name_,
             ": load_state: parameter ", i, " at step ", st.step, " has ", st.buffers.size(), " buffers, expected ",
             buffer_names_.size());
    for (size_t k = 0; k < st.buffers.size(); ++k) {
      const Tensor& b = st.buffers[k];
      // on any device: the copies below land on the parameter's
      MG_CHECK(b.defined() && b.shape() == p.shape() && b.dtype() == p.dtype(), name_, ": load_state: buffer '",
               buffer_names_[k], "' of parameter ", i, " must be ", dtype_name(p.dtype()), " ",
               shape_str(p.shape()), " on ", p.device().str(), ", got ",
               b.defined() ? detail::cat(dtype_name(b.dtype()), " ", shape_str(b.shape()), " on ", b.device().str())
                           : std::string("an undefined tensor"));
    }
  }
  for (size_t i = 0; i < state.size(); ++i) {
    state_[i].step = state[i].step;
    state_[i].buffers.clear();
    for (const Tensor& b : state[i].buffers) {
      Tensor copy = Tensor::empty(b.shape(), b.dtype(), params_[i].device());
      copy.copy_(b);
      state_[i].buffers.push_back(copy);
    }
  }
}

// ---- SGD ----

SGD::SGD(std::vector<Tensor> params, SGDOptions options)
    : Optimizer(std::move(params), options.lr, sgd_buffers(options), "SGD"), options_(options) {
  check_option(options.momentum >= 0 && options.momentum < 1, options.momentum, name_, "momentum", "in [0, 1)");
  check_option(options.weight_decay >= 0, options.weight_decay, name_, "weight_decay", ">= 0");
}

void SGD::update(const Tensor& param, const Tensor& grad, ParamState& st) {
  if (param.device().is_cuda())
    return MOEGRAD_CUDA(cuda_sgd_update(param, grad, st.buffers.empty() ? Tensor() : st.buffers[0], lr_,
                                        options_.weight_decay, options_.momentum, st.step == 1));
  dispatch_float(param.dtype(), name_, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* w = param.data<T>();
    const T* g = grad.data<T>();
    T* buf = st.buffers.empty() ? nullptr : st.buffers[0].data<T>();
    const bool first = st.step == 1;
    const T lr = static_cast<T>(lr_), wd = static_cast<T>(options_.weight_decay),
            mom = static_cast<T>(options_.momentum);
    parallel_for(param.numel(), kUpdateGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        T d = g[i] + wd * w[i];
        if (buf) d = buf[i] = first ? d : mom * buf[i] + d;
        w[i] -= lr * d;
      }
    });
  });
}

// ---- Adam / AdamW ----

Adam::Adam(std::vector<Tensor> params, AdamOptions options) : Adam(std::move(params), options, false, "Adam") {}

Adam::Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled, const char* name)
    : Optimizer(std::move(params), options.lr, {"m", "v"}, name), options_(options), decoupled_(decoupled) {
  check_option(options.beta1 >= 0 && options.beta1 < 1, options.beta1, name, "beta1", "in [0, 1)");
  check_option(options.beta2 >= 0 && options.beta2 < 1, options.beta2, name, "beta2", "in [0, 1)");
  check_option(options.eps > 0, options.eps, name, "eps", "> 0");
  check_option(options.weight_decay >= 0, options.weight_decay, name, "weight_decay", ">= 0");
}

AdamW::AdamW(std::vector<Tensor> params, AdamOptions options) : Adam(std::move(params), options, true, "AdamW") {}

void Adam::update(const Tensor& param, const Tensor& grad, ParamState& st) {
  const AdamOptions& o = options_;
  const double t = static_cast<double>(st.step);
  const double bias1 = 1 - std::pow(o.beta1, t), bias2 = 1 - std::pow(o.beta2, t);
  // The constants of the update, in double; both paths cast them to the dtype.
  const double l2 = decoupled_ ? 0.0 : o.weight_decay;          // Adam: into the gradient
  const double keep = decoupled_ ? 1 - lr_ * o.weight_decay : 1.0;  // AdamW: on the weight
  const double step_size = lr_ / bias1, inv_sqrt_bias2 = 1 / std::sqrt(bias2);
  if (param.device().is_cuda())
    return MOEGRAD_CUDA(cuda_adam_update(param, grad, st.buffers[0], st.buffers[1],
                                         CudaAdamStep{o.beta1, o.beta2, o.eps, l2, keep, step_size, inv_sqrt_bias2}));
  dispatch_float(param.dtype(), name_, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* w = param.data<T>();
    const T* g = grad.data<T>();
    T* m = st.buffers[0].data<T>();
    T* v = st.buffers[1].data<T>();
    const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2), eps = static_cast<T>(o.eps);
    const T l2t = static_cast<T>(l2), keept = static_cast<T>(keep);
    const T step_t = static_cast<T>(step_size), inv_sqrt_bias2_t = static_cast<T>(inv_sqrt_bias2);
    // captured by value: GCC vectorises the loop only when the pointers are the lambda's own
    parallel_for(param.numel(), kUpdateGrain, [=](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T gi = g[i] + l2t * w[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        w[i] = keept * w[i] - step_t * m[i] / (std::sqrt(v[i]) * inv_sqrt_bias2_t + eps);
      }
    });
  });
}

}  // namespace moegrad
