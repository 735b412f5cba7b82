// Top-k and AC routers (see router.h). On CUDA the top-k + softmax, the
// losses and the mixing softmax run in cuda/moe_router.h's kernels
// (deterministic: fixed-order sums, no atomics), the counts of the balance
// loss through cuda/sort.h's counting sort.
#include "moe/router.h"

#include <cmath>

#include "autograd/ops/util.h"
#ifdef MOEGRAD_WITH_CUDA
#include "cuda/moe_router.h"
#include "cuda/sort.h"
#endif

namespace moegrad {

namespace {

#ifdef MOEGRAD_WITH_CUDA
// t as a contiguous detached tensor (a copy when it is not contiguous).
Tensor dense(const Tensor& t) { return contiguous(t.detach()).detach(); }

RouterTopK cuda_router_topk_softmax(const Tensor& logits_in, int64_t k) {
  Tensor logits = dense(logits_in);
  const int64_t n = logits.size(0), E = logits.size(1);
  const Device device = logits.device();
  RouterTopK out{Tensor::empty({n, k}, logits.dtype(), device), Tensor::empty({n, k}, DType::Int64, device),
                 Tensor::empty({n, k}, logits.dtype(), device)};
  cuda_router_topk(logits, k, out.values, out.indices, out.scores);
  // the graph of the CPU's topk then softmax: logits -> values -> scores
  attach_backward(out.values, "router top-k", {logits_in}, [indices = out.indices, E](const Tensor& dv) {
    Tensor dlogits = Tensor::empty({indices.size(0), E}, dv.dtype(), dv.device());
    cuda_router_topk_backward(dense(dv), indices, dlogits);
    return std::vector<Tensor>{dlogits};
  });
  attach_backward(out.scores, "router top-k softmax", {out.values}, [y = out.scores.detach()](const Tensor& dy) {
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    cuda_row_softmax_backward(y, dense(dy), dx);
    return std::vector<Tensor>{dx};
  });
  return out;
}

// softmax over the last dim of x [n, m] (short rows: one thread per row).
Tensor cuda_row_softmax_op(const Tensor& x_in) {
  Tensor x = dense(x_in);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  cuda_row_softmax(x, y);
  attach_backward(y, "router softmax", {x_in}, [yd = y.detach()](const Tensor& dy) {
    Tensor dx = Tensor::empty(yd.shape(), yd.dtype(), yd.device());
    cuda_row_softmax_backward(yd, dense(dy), dx);
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor cuda_switch_balance_loss(const Tensor& logits_in, const Tensor& indices) {
  const int64_t slots = indices.numel();
  Tensor flat = dense(indices);
  flat = flat.as_strided({slots}, {1}, flat.offset());
  const Tensor offsets = cuda_counting_sort(flat, logits_in.size(1), "switch_balance_loss (indices)").offsets;
  Tensor logits = dense(logits_in);
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());
  cuda_balance_loss(logits, offsets, slots, loss);
  attach_backward(loss, "switch_balance_loss", {logits_in}, [logits, offsets, slots](const Tensor& dloss) {
    Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
    cuda_balance_loss_backward(logits, offsets, slots, dense(dloss), dlogits);
    return std::vector<Tensor>{dlogits};
  });
  return loss;
}

Tensor cuda_router_z_loss(const Tensor& logits_in) {
  Tensor logits = dense(logits_in);
  Tensor lse = Tensor::empty({logits.size(0)}, DType::Float64, logits.device());
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());
  cuda_z_loss(logits, lse, loss);
  attach_backward(loss, "router_z_loss", {logits_in}, [logits, lse](const Tensor& dloss) {
    Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
    cuda_z_loss_backward(logits, lse, dense(dloss), dlogits);
    return std::vector<Tensor>{dlogits};
  });
  return loss;
}
#endif

// softmax over the last dim of the AC mixing logits [n, m], on either device.
Tensor mixing_softmax(const Tensor& logits) {
#ifdef MOEGRAD_WITH_CUDA
  if (logits.device().is_cuda()) return cuda_row_softmax_op(logits);
#endif
  return softmax(logits, -1);
}

}  // namespace

RouterTopK router_topk_softmax(const Tensor& logits, int64_t k) {
  check_float(logits, "router_topk_softmax", "logits");
  MG_CHECK(logits.dim() == 2, "router_topk_softmax: expected logits [n, E], got ", shape_str(logits.shape()));
  MG_CHECK(k >= 1 && k <= logits.size(1), "router_topk_softmax: k = ", k, " out of range [1, ", logits.size(1),
           "] for logits ", shape_str(logits.shape()));
#ifdef MOEGRAD_WITH_CUDA
  if (logits.device().is_cuda()) return cuda_router_topk_softmax(logits, k);
#endif
  TopK top = topk(logits, k, -1);
  return {top.values, top.indices, softmax(top.values, -1)};
}

Tensor switch_balance_loss(const Tensor& logits, const Tensor& indices) {
  check_float(logits, "switch_balance_loss", "logits");
  check_index(indices, logits.device(), "switch_balance_loss", "indices");
  MG_CHECK(logits.dim() == 2 && indices.dim() == 2 && indices.size(0) == logits.size(0),
           "switch_balance_loss: expected logits [n, E] and indices [n, k], got ", shape_str(logits.shape()), " and ",
           shape_str(indices.shape()));
#ifdef MOEGRAD_WITH_CUDA
  if (logits.device().is_cuda()) {
    MG_CHECK(logits.size(0) > 0 && logits.size(1) > 0, "switch_balance_loss: logits ", shape_str(logits.shape()),
             " have no tokens or no experts");
    return cuda_switch_balance_loss(logits, indices);
  }
#endif
  const int64_t E = logits.size(1);
  std::vector<double> f(E, 0.0);
  const std::vector<int64_t> idx = indices.to_indices();
  for (int64_t e : idx) {
    MG_CHECK(e >= 0 && e < E, "switch_balance_loss: expert index ", e, " outside [0, ", E, ")");
    f[e] += 1.0 / static_cast<double>(idx.size());
  }
  Tensor share = Tensor::from_vector(f, {E}, logits.dtype());
  Tensor mean_prob = mean(softmax(logits, -1), {0});
  return mul(sum(mul(share, mean_prob)), static_cast<double>(E));
}

Tensor router_z_loss(const Tensor& logits) {
  check_float(logits, "router_z_loss", "logits");
  MG_CHECK(logits.dim() == 2, "router_z_loss: expected logits [n, E], got ", shape_str(logits.shape()));
#ifdef MOEGRAD_WITH_CUDA
  if (logits.device().is_cuda()) {
    MG_CHECK(logits.size(0) > 0 && logits.size(1) > 0, "router_z_loss: logits ", shape_str(logits.shape()),
             " have no tokens or no experts");
    return cuda_router_z_loss(logits);
  }
#endif
  // logsumexp = x_0 - log_softmax(x)_0, differentiable through both ops
  Tensor lse = sub(narrow(logits, 1, 0, 1), narrow(log_softmax(logits, -1), 1, 0, 1));
  return mean(mul(lse, lse));
}

TopKRouter::TopKRouter(const RouterConfig& c, const InitOptions& opt) : config(c) {
  MG_CHECK(c.dim > 0 && c.experts > 0, "TopKRouter: dim and experts must be positive, got dim=", c.dim,
           " experts=", c.experts);
  MG_CHECK(c.k >= 1 && c.k <= c.experts, "TopKRouter: k must be in [1, experts=", c.experts, "], got ", c.k);
  const double bound = 1.0 / std::sqrt(static_cast<double>(c.dim));
  weight = register_parameter("weight", init_uniform({c.experts, c.dim}, bound, opt));
  if (c.gate == GateKind::Linear) bias = register_parameter("bias", init_uniform({c.experts}, bound, opt));
}

Tensor TopKRouter::gate_logits(const Tensor& x) const {
  MG_CHECK(x.defined() && x.dim() == 2 && x.size(1) == config.dim, "router: expected tokens [n, ", config.dim,
           "], got ", x.defined() ? shape_str(x.shape()) : "undefined");
  if (config.gate == GateKind::Linear) return add(matmul(x, transpose(weight, 0, 1)), bias);
  Tensor unit = div(weight, sqrt(add(sum(mul(weight, weight), {1}, true), 1e-12)));
  return matmul(x, transpose(unit, 0, 1));
}

RouterOutput TopKRouter::route(const Tensor& logits) const {
  RouterOutput out;
  out.logits = logits;
  RouterTopK top = router_topk_softmax(logits, config.k);
  out.indices = top.indices;
  out.topk_logits = top.values;
  out.scores = top.scores;
  out.balance_loss = switch_balance_loss(logits, top.indices);
  out.z_loss = router_z_loss(logits);
  return out;
}

RouterOutput TopKRouter::forward(const Tensor& x) {
  RouterOutput out = route(gate_logits(x));
  out.scaled_input = x;
  return out;
}

ACRouter::ACRouter(const RouterConfig& c, const ACConfig& a, const InitOptions& opt) : TopKRouter(c, opt), ac(a) {
  MG_CHECK(a.mix_m >= 1 && a.mix_m <= c.experts, "ACRouter: mix_m must be in [1, experts=", c.experts, "], got ",
           a.mix_m);
}

ACScale ac_token_scale(const Tensor& x, const Assignments& prev, int64_t experts, const ACOptions& options,
                       int64_t mix_m, bool differentiable, const char* caller) {
  MG_CHECK(prev.defined(), caller, ": AC needs the previous MoE layer's assignments (the first MoE layer of a model ",
           "must use the top-k router)");
  MG_CHECK(x.defined() && x.dim() == 2 && prev.indices.dim() == 2 && prev.indices.size(0) == x.size(0) &&
               prev.indices.size(1) > 0,
           caller, ": previous assignments ", shape_str(prev.indices.shape()), " do not match tokens ",
           x.defined() ? shape_str(x.shape()) : "undefined");
  MG_CHECK(mix_m == 1 || (prev.logits.defined() && prev.logits.shape() == prev.indices.shape()), caller,
           ": mixing over the previous top ", mix_m, " needs their logits of shape ", shape_str(prev.indices.shape()),
           ", got ", prev.logits.defined() ? shape_str(prev.logits.shape()) : "undefined");
  MG_CHECK(mix_m == 1 || prev.logits.dtype() == x.dtype(), caller, ": previous logits are ",
           dtype_name(prev.logits.dtype()), " but tokens are ", dtype_name(x.dtype()));
  MG_CHECK(prev.indices.device() == x.device() && (mix_m == 1 || prev.logits.device() == x.device()), caller,
           ": previous assignments are on ", prev.indices.device().str(), " but tokens are on ", x.device().str());
  Tensor labels = contiguous(squeeze(narrow(prev.indices, 1, 0, 1), 1));
  ACScale out;
  if (differentiable) {
    out.W = ac_cluster_weights(x, labels, experts, options);
  } else {
    NoGradGuard no_grad;
    out.W = ac_cluster_weights(x.detach(), labels, experts, options);
  }
  if (mix_m == 1) {
    out.scaled = ac_scale_gather(x, out.W, labels);
  } else {
    Tensor mix_logits = narrow(prev.logits, 1, 0, mix_m);
    if (!differentiable) mix_logits = mix_logits.detach();
    out.scaled = ac_scale_gather(x, out.W, contiguous(narrow(prev.indices, 1, 0, mix_m)),
                                 mixing_softmax(mix_logits));
  }
  return out;
}

RouterOutput ACRouter::forward(const Tensor& x, const Assignments& prev) {
  MG_CHECK(!prev.defined() || prev.indices.dim() != 2 || prev.indices.size(1) >= ac.mix_m, "ACRouter: mixing over the top ",
           ac.mix_m, " needs at least that many previous choices, got ", prev.indices.size(1));
  ACScale scale = ac_token_scale(x, prev, config.experts, ac.stats, ac.mix_m, ac.differentiable, "ACRouter");
  RouterOutput out = route(gate_logits(scale.scaled));
  out.scaled_input = scale.scaled;
  out.ac_weights = scale.W;
  return out;
}

}  // namespace moegrad
