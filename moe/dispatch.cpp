// Routing plan (counting sort by expert), permute, grouped linear and combine,
// each forward beside its hand-written backward. All kernels write every
// output element from one thread in a fixed order, so results are
// deterministic; parallelism is over tokens (permute, combine) or over
// experts (grouped linear: one GEMM per expert block).
#include "moe/dispatch.h"

#include <Eigen/Core>
#include <cmath>
#include <cstring>

#include "autograd/ops/util.h"
#include "tensor/parallel.h"

namespace moegrad {

PlanPtr make_routing_plan(const Tensor& expert_index, int64_t experts, double capacity_factor) {
  check_index(expert_index, "make_routing_plan", "expert_index");
  MG_CHECK(expert_index.dim() == 2, "make_routing_plan: expert_index must be [tokens, k], got ",
           shape_str(expert_index.shape()));
  MG_CHECK(experts > 0, "make_routing_plan: number of experts must be positive, got ", experts);
  auto plan = std::make_shared<RoutingPlan>();
  RoutingPlan& p = *plan;
  p.tokens = expert_index.size(0);
  p.k = expert_index.size(1);
  p.experts = experts;
  if (capacity_factor > 0)
    p.capacity = static_cast<int64_t>(std::ceil(capacity_factor * p.tokens * p.k / static_cast<double>(experts)));
  std::vector<int64_t> idx = expert_index.to_indices();
  for (size_t s = 0; s < idx.size(); ++s)
    MG_CHECK(idx[s] >= 0 && idx[s] < experts, "make_routing_plan: expert index ", idx[s], " at token ",
             s / p.k, " choice ", s % p.k, " outside [0, ", experts, ")");

  // histogram with ranks in (choice, token) order, dropping past capacity
  std::vector<int64_t> rank(idx.size(), -1);
  p.counts.assign(experts, 0);
  for (int64_t j = 0; j < p.k; ++j)
    for (int64_t i = 0; i < p.tokens; ++i) {
      int64_t e = idx[i * p.k + j];
      if (p.capacity > 0 && p.counts[e] >= p.capacity) continue;
      rank[i * p.k + j] = p.counts[e]++;
    }
  // exclusive scan, then scatter
  p.offsets.assign(experts + 1, 0);
  for (int64_t e = 0; e < experts; ++e) p.offsets[e + 1] = p.offsets[e] + p.counts[e];
  p.position.assign(idx.size(), -1);
  p.row_token.assign(p.rows(), 0);
  p.row_slot.assign(p.rows(), 0);
  for (size_t s = 0; s < idx.size(); ++s) {
    if (rank[s] < 0) continue;
    int64_t row = p.offsets[idx[s]] + rank[s];
    p.position[s] = row;
    p.row_token[row] = static_cast<int64_t>(s) / p.k;
    p.row_slot[row] = static_cast<int64_t>(s);
  }
  return plan;
}

static void check_plan(const PlanPtr& plan, const char* op) {
  MG_CHECK(plan != nullptr, op, ": routing plan is null");
}

// ---- permute: xp[r] = x[row_token[r]];  dx[i] = Σ_j dxp[position[i, j]] ----

Tensor moe_permute(const Tensor& x_in, const PlanPtr& plan) {
  check_plan(plan, "moe_permute");
  check_float(x_in, "moe_permute");
  MG_CHECK(x_in.dim() == 2 && x_in.size(0) == plan->tokens, "moe_permute: expected x of shape [", plan->tokens,
           ", d], got ", shape_str(x_in.shape()));
  Tensor x = contiguous(x_in).detach();
  const int64_t d = x.size(1), rows = plan->rows();
  Tensor xp = Tensor::empty({rows, d}, x.dtype());
  const size_t row_bytes = d * dtype_size(x.dtype());
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(xp.raw_data());
  parallel_for(rows, grain_for(d), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) std::memcpy(dst + r * row_bytes, src + plan->row_token[r] * row_bytes, row_bytes);
  });
  attach_backward(xp, "moe_permute", {x_in}, [plan, d](const Tensor& dxp_in) {
    Tensor dxp = contiguous(dxp_in);
    Tensor dx = Tensor::zeros({plan->tokens, d}, dxp.dtype());
    dispatch_float(dxp.dtype(), "moe_permute backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* g = dxp.data<T>();
      T* out = dx.data<T>();
      const int64_t k = plan->k;
      parallel_for(plan->tokens, grain_for(d * k),
                   [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          for (int64_t j = 0; j < k; ++j) {
            int64_t r = plan->position[i * k + j];
            if (r < 0) continue;
            for (int64_t c = 0; c < d; ++c) out[i * d + c] += g[r * d + c];
          }
      });
    });
    return std::vector<Tensor>{dx};
  });
  return xp;
}

// ---- grouped linear: block e of rows: yp_e = xp_e W_eᵀ + b_e ----
//   dxp_e = dyp_e W_e,   dW_e = dyp_eᵀ xp_e,   db_e = Σ_rows dyp_e

namespace {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMap = Eigen::Map<const RowMat<T>>;
template <typename T>
using MutMap = Eigen::Map<RowMat<T>>;

// Runs f(e) for every expert, load-balanced over threads (dynamic schedule;
// each expert's work is sequential, so the result is deterministic). Small
// layers (`work` operations in all) run on the calling thread: waking the
// threads would cost more than the products.
template <typename F>
void for_each_expert(int64_t experts, int64_t work, F f) {
#pragma omp parallel for schedule(dynamic, 1) if (work > kParallelGrain)
  for (int64_t e = 0; e < experts; ++e) f(e);
}

}  // namespace

Tensor grouped_linear(const Tensor& xp_in, const Tensor& weight, const Tensor& bias, const PlanPtr& plan) {
  check_plan(plan, "grouped_linear");
  check_float(xp_in, "grouped_linear", "input");
  check_float(weight, "grouped_linear", "weight");
  check_same_type(xp_in, weight, "grouped_linear");
  const int64_t E = plan->experts;
  MG_CHECK(weight.dim() == 3 && weight.size(0) == E, "grouped_linear: weight must be [", E,
           ", out, in], got ", shape_str(weight.shape()));
  const int64_t out_f = weight.size(1), in_f = weight.size(2);
  MG_CHECK(xp_in.dim() == 2 && xp_in.size(0) == plan->rows() && xp_in.size(1) == in_f,
           "grouped_linear: expected input [", plan->rows(), ", ", in_f, "], got ", shape_str(xp_in.shape()));
  if (bias.defined()) {
    check_float(bias, "grouped_linear", "bias");
    check_same_type(xp_in, bias, "grouped_linear");
    MG_CHECK(bias.dim() == 2 && bias.size(0) == E && bias.size(1) == out_f, "grouped_linear: bias must be [", E,
             ", ", out_f, "], got ", shape_str(bias.shape()));
  }
  Tensor xp = contiguous(xp_in).detach(), w = contiguous(weight).detach();
  Tensor b = bias.defined() ? contiguous(bias).detach() : Tensor();
  Tensor yp = Tensor::empty({plan->rows(), out_f}, xp.dtype());
  dispatch_float(xp.dtype(), "grouped_linear", [&](auto tag) {
    using T = typename decltype(tag)::type;
    for_each_expert(E, plan->rows() * in_f * out_f, [&](int64_t e) {
      const int64_t r0 = plan->offsets[e], n = plan->counts[e];
      if (n == 0) return;
      MutMap<T> y(yp.data<T>() + r0 * out_f, n, out_f);
      y.noalias() = ConstMap<T>(xp.data<T>() + r0 * in_f, n, in_f) *
                    ConstMap<T>(w.data<T>() + e * out_f * in_f, out_f, in_f).transpose();
      if (b.defined()) y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(b.data<T>() + e * out_f, out_f);
    });
  });
  std::vector<Tensor> inputs{xp_in, weight};
  if (bias.defined()) inputs.push_back(bias);
  attach_backward(yp, "grouped_linear", inputs, [plan, xp, w, has_bias = bias.defined(), in_f, out_f](
                                                     const Tensor& dyp_in) {
    Tensor dyp = contiguous(dyp_in);
    const int64_t E = plan->experts;
    Tensor dxp = Tensor::empty(xp.shape(), xp.dtype());
    Tensor dw = Tensor::empty(w.shape(), w.dtype());
    Tensor db = has_bias ? Tensor::empty({E, out_f}, w.dtype()) : Tensor();
    dispatch_float(xp.dtype(), "grouped_linear backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      for_each_expert(E, plan->rows() * in_f * out_f, [&](int64_t e) {
        const int64_t r0 = plan->offsets[e], n = plan->counts[e];
        MutMap<T> dW(dw.data<T>() + e * out_f * in_f, out_f, in_f);
        if (n == 0) {
          dW.setZero();
          if (has_bias) MutMap<T>(db.data<T>() + e * out_f, 1, out_f).setZero();
          return;
        }
        ConstMap<T> g(dyp.data<T>() + r0 * out_f, n, out_f);
        ConstMap<T> x(xp.data<T>() + r0 * in_f, n, in_f);
        MutMap<T>(dxp.data<T>() + r0 * in_f, n, in_f).noalias() =
            g * ConstMap<T>(w.data<T>() + e * out_f * in_f, out_f, in_f);
        dW.noalias() = g.transpose() * x;
        if (has_bias) MutMap<T>(db.data<T>() + e * out_f, 1, out_f) = g.colwise().sum();
      });
    });
    std::vector<Tensor> grads{dxp, dw};
    if (has_bias) grads.push_back(db);
    return grads;
  });
  return yp;
}

// ---- combine: y_i = Σ_j s_ij yp[pos_ij] ----
//   dyp[pos_ij] = s_ij dy_i,   ds_ij = <dy_i, yp[pos_ij]>

Tensor moe_combine(const Tensor& yp_in, const Tensor& scores_in, const PlanPtr& plan) {
  check_plan(plan, "moe_combine");
  check_float(yp_in, "moe_combine", "expert outputs");
  check_float(scores_in, "moe_combine", "scores");
  check_same_type(yp_in, scores_in, "moe_combine");
  MG_CHECK(yp_in.dim() == 2 && yp_in.size(0) == plan->rows(), "moe_combine: expected expert outputs [",
           plan->rows(), ", d], got ", shape_str(yp_in.shape()));
  MG_CHECK(scores_in.shape() == (Shape{plan->tokens, plan->k}), "moe_combine: expected scores [", plan->tokens,
           ", ", plan->k, "], got ", shape_str(scores_in.shape()));
  Tensor yp = contiguous(yp_in).detach(), scores = contiguous(scores_in).detach();
  const int64_t d = yp.size(1), n = plan->tokens, k = plan->k;
  Tensor y = Tensor::zeros({n, d}, yp.dtype());
  const int64_t grain = grain_for(d * k);
  dispatch_float(yp.dtype(), "moe_combine", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = yp.data<T>();
    const T* s = scores.data<T>();
    T* out = y.data<T>();
    parallel_for(n, grain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        for (int64_t j = 0; j < k; ++j) {
          int64_t r = plan->position[i * k + j];
          if (r < 0) continue;
          const T sc = s[i * k + j];
          for (int64_t c = 0; c < d; ++c) out[i * d + c] += sc * src[r * d + c];
        }
    });
  });
  attach_backward(y, "moe_combine", {yp_in, scores_in}, [plan, yp, scores, grain](const Tensor& dy_in) {
    Tensor dy = contiguous(dy_in);
    const int64_t d = yp.size(1), n = plan->tokens, k = plan->k;
    Tensor dyp = Tensor::empty(yp.shape(), yp.dtype());
    Tensor ds = Tensor::zeros(scores.shape(), scores.dtype());
    dispatch_float(yp.dtype(), "moe_combine backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* g = dy.data<T>();
      const T* src = yp.data<T>();
      const T* s = scores.data<T>();
      T* dsrc = dyp.data<T>();
      T* dsc = ds.data<T>();
      parallel_for(n, grain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          for (int64_t j = 0; j < k; ++j) {
            int64_t r = plan->position[i * k + j];
            if (r < 0) continue;
            const T sc = s[i * k + j];
            T dot = 0;
            for (int64_t c = 0; c < d; ++c) {
              dsrc[r * d + c] = sc * g[i * d + c];
              dot += g[i * d + c] * src[r * d + c];
            }
            dsc[i * k + j] = dot;
          }
      });
    });
    return std::vector<Tensor>{dyp, ds};
  });
  return y;
}

}  // namespace moegrad
