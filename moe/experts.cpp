// Stacked expert FFNs (see experts.h).
#include "moe/experts.h"

#include <cmath>

#include "nn/layers.h"

namespace moegrad {

StackedExperts::StackedExperts(int64_t E, int64_t d, int64_t h, const InitOptions& opt, const ExpertOptions& o)
    : experts(E), dim(d), hidden(h), options(o) {
  MG_CHECK(E > 0 && d > 0 && h > 0, "StackedExperts: experts, dim and hidden must be positive, got ", E, ", ", d,
           ", ", h);
  if (o.init == ExpertInit::Official) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(d * h));
    w1 = register_parameter("w1", init_uniform({E, h, d}, bound, opt));
    b1 = register_parameter("b1", Tensor::zeros({E, h}, opt.dtype));
    w2 = register_parameter("w2", init_uniform({E, d, h}, bound, opt));
    b2 = register_parameter("b2", Tensor::zeros({E, d}, opt.dtype));
  } else {
    const double b_in = 1.0 / std::sqrt(static_cast<double>(d));
    const double b_hidden = 1.0 / std::sqrt(static_cast<double>(h));
    w1 = register_parameter("w1", init_uniform({E, h, d}, b_in, opt));
    b1 = register_parameter("b1", init_uniform({E, h}, b_in, opt));
    w2 = register_parameter("w2", init_uniform({E, d, h}, b_hidden, opt));
    b2 = register_parameter("b2", init_uniform({E, d}, b_hidden, opt));
  }
  if (o.dropout > 0) {
    Generator& g = opt.generator();
    drop = register_module("drop", std::make_shared<Dropout>(o.dropout, random_bits(g.seed(), g.take(1))));
  }
}

// The hidden activations of either forward: act(h), then dropout.
static Tensor hidden_activations(const Tensor& h, const StackedExperts& e) {
  const Tensor a = activate(h, e.options.activation);
  return e.drop ? e.drop->forward(a) : a;
}

Tensor StackedExperts::forward(const Tensor& xp, const PlanPtr& plan) {
  return grouped_linear(hidden_activations(grouped_linear(xp, w1, b1, plan), *this), w2, b2, plan);
}

Tensor StackedExperts::forward_batched(const Tensor& xs) {
  MG_CHECK(xs.defined() && xs.dim() == 3 && xs.size(0) == experts && xs.size(2) == dim,
           "StackedExperts: expected [", experts, ", N, ", dim, "], got ",
           xs.defined() ? shape_str(xs.shape()) : "undefined");
  Tensor h = hidden_activations(add(matmul(xs, transpose(w1, 1, 2)), unsqueeze(b1, 1)), *this);
  return add(matmul(h, transpose(w2, 1, 2)), unsqueeze(b2, 1));
}

}  // namespace moegrad
