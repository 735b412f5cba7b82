// Finite-difference gradient check (see gradcheck.h).
#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/util.h"

namespace moegrad {

namespace {

// L = sum(out * R) in double, without recording a graph.
double project(const Tensor& out, const std::vector<double>& r) {
  std::vector<double> v = out.to_vector();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * r[i];
  return s;
}

Tensor evaluate(const TensorFunction& f, const std::vector<Tensor>& inputs) {
  Tensor out = f(inputs);
  MG_CHECK(out.defined(), "gradcheck: the function returned an undefined tensor");
  MG_CHECK(out.dtype() == DType::Float64, "gradcheck: the function must return float64, got ",
           dtype_name(out.dtype()));
  return out;
}

double perturbed(const TensorFunction& f, const std::vector<Tensor>& inputs, const Shape& shape,
                 const std::vector<double>& r) {
  Tensor out = evaluate(f, inputs);
  MG_CHECK(out.shape() == shape, "gradcheck: the output's shape changed from ", shape_str(shape), " to ",
           shape_str(out.shape()), " between calls");
  return project(out, r);
}

}  // namespace

GradcheckResult gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options) {
  MG_CHECK(options.eps > 0 && std::isfinite(options.eps), "gradcheck: eps must be positive and finite, got ",
           options.eps);
  bool any = false;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    MG_CHECK(x.defined(), "gradcheck: input ", k, " is undefined");
    if (!x.requires_grad()) continue;
    any = true;
    MG_CHECK(x.dtype() == DType::Float64, "gradcheck: input ", k, " requires grad but is ", dtype_name(x.dtype()),
             "; finite differences need float64");
    MG_CHECK(x.is_leaf(), "gradcheck: input ", k, " must be a leaf (make it with requires_grad_())");
    MG_CHECK(expanded_dim(x) < 0, "gradcheck: input ", k, " of shape ", shape_str(x.shape()),
             " has overlapping memory (an expanded view); pass a contiguous copy");
  }
  MG_CHECK(any, "gradcheck: no input requires grad");

  // analytic gradients, leaving the inputs' own grads as they were
  std::vector<Tensor> saved(inputs.size());
  for (size_t k = 0; k < inputs.size(); ++k) {
    saved[k] = inputs[k].grad();
    inputs[k].zero_grad();
  }
  Tensor out = evaluate(f, inputs);
  const Shape out_shape = out.shape();
  MG_CHECK(out.requires_grad(), "gradcheck: the output does not depend on any input that requires grad");
  Generator gen(options.seed);
  Tensor r = Tensor::randn(out_shape, 0.0, 1.0, DType::Float64, &gen);
  std::vector<double> rv = r.to_vector();
  out.backward(r.to(out.device()));
  std::vector<Tensor> analytic(inputs.size());
  for (size_t k = 0; k < inputs.size(); ++k) {
    analytic[k] = inputs[k].grad();
    inputs[k].set_grad(saved[k]);
  }

  GradcheckResult res;
  double worst = -1;
  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    std::vector<double> a = analytic[k].defined() ? analytic[k].to_vector() : std::vector<double>(x.numel(), 0.0);
    // on a device, each element is read from a host copy and written through a one-element view
    const bool host = x.device().is_cpu();
    double* base = host ? static_cast<double*>(x.storage()->data()) : nullptr;
    const std::vector<double> values = host ? std::vector<double>() : x.to_vector();
    Shape idx(x.dim(), 0);
    for (int64_t j = 0; j < x.numel(); ++j) {
      int64_t off = x.offset();
      for (int64_t d = 0; d < x.dim(); ++d) off += idx[d] * x.strides()[d];
      auto set = [&](double v) { host ? void(base[off] = v) : x.as_strided({}, {}, off).fill_(v); };
      const double orig = host ? base[off] : values[j];
      set(orig + options.eps);
      const double lp = perturbed(f, inputs, out_shape, rv);
      set(orig - options.eps);
      const double lm = perturbed(f, inputs, out_shape, rv);
      set(orig);
      const double numeric = (lp - lm) / (2 * options.eps);
      const double diff = std::fabs(a[j] - numeric);
      const double tol = options.atol + options.rtol * std::fabs(numeric);
      const double badness = std::isfinite(diff) ? diff / tol : INFINITY;
      res.checked++;
      if (!(diff <= tol)) res.failed++;
      if (badness > worst) {
        worst = badness;
        res.input = static_cast<int>(k);
        res.index = idx;
        res.analytic = a[j];
        res.numeric = numeric;
        res.error = diff / std::max(std::fabs(numeric), 1e-12);
      }
      for (int64_t d = x.dim() - 1; d >= 0; --d) {  // next index, row-major
        if (++idx[d] < x.shape()[d]) break;
        idx[d] = 0;
      }
    }
  }
  res.ok = res.failed == 0;
  res.message = detail::cat(res.ok ? "gradcheck passed" : "gradcheck failed", ": ", res.failed, " of ", res.checked,
                            " elements out of tolerance (atol ", options.atol, ", rtol ", options.rtol,
                            "); worst: input ", res.input, " index ", shape_str(res.index), " analytic ",
                            res.analytic, " numeric ", res.numeric, " relative error ", res.error);
  return res;
}

}  // namespace moegrad
