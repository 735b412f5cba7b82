// Routing plan (counting sort by expert), permute, grouped linear and combine,
// each forward beside its hand-written backward. Each op builds one node; the
// plan's device picks the kernels. All kernels write every output element from
// one thread in a fixed order, so results are deterministic; on the CPU the
// parallelism is over tokens (permute, combine) or over tiles of the experts'
// outputs (grouped linear: one parallel region for all experts' products). On CUDA: the plan through cuda/sort.h's
// stable counting sort and the scatter of cuda/moe_dispatch.h, the gathers and
// sums there too (one thread per output element, terms in choice order), and
// one cuBLAS GEMM per non-empty expert block (cuda/gemm.h) on views of the
// permuted buffer, the bias gradient by cuda/reduce.h's fixed-order column sum.
#include "moe/dispatch.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "autograd/ops/util.h"
#include "cuda/gemm.h"
#include "cuda/moe_dispatch.h"
#include "cuda/reduce.h"
#include "cuda/sort.h"
#include "tensor/cpu_gemm.h"
#include "tensor/parallel.h"

namespace moegrad {

namespace {

// ---- the plan ----

// Error naming the first expert index outside [0, E) of idx [n * k].
void check_expert_indices(const std::vector<int64_t>& idx, const RoutingPlan& p) {
  for (size_t s = 0; s < idx.size(); ++s)
    MG_CHECK(idx[s] >= 0 && idx[s] < p.experts, "make_routing_plan: expert index ", idx[s], " at token ", s / p.k,
             " choice ", s % p.k, " outside [0, ", p.experts, ")");
}

// The plan from host indices idx [n * k]: ranks in (choice, token) order,
// dropping past capacity, then an exclusive scan and the scatter.
void build_plan(const std::vector<int64_t>& idx, RoutingPlan& p) {
  std::vector<int64_t> rank(idx.size(), -1);
  p.counts.assign(p.experts, 0);
  for (int64_t j = 0; j < p.k; ++j)
    for (int64_t i = 0; i < p.tokens; ++i) {
      const int64_t e = idx[i * p.k + j];
      if (p.capacity > 0 && p.counts[e] >= p.capacity) continue;
      rank[i * p.k + j] = p.counts[e]++;
    }
  p.offsets.assign(p.experts + 1, 0);
  for (int64_t e = 0; e < p.experts; ++e) p.offsets[e + 1] = p.offsets[e] + p.counts[e];
  std::vector<int64_t> position(idx.size(), -1), row_token(p.rows()), row_slot(p.rows());
  for (size_t s = 0; s < idx.size(); ++s) {
    if (rank[s] < 0) continue;
    const int64_t row = p.offsets[idx[s]] + rank[s];
    position[s] = row;
    row_token[row] = static_cast<int64_t>(s) / p.k;
    row_slot[row] = static_cast<int64_t>(s);
  }
  p.position = Tensor::from_indices(position, {p.tokens, p.k});
  p.row_token = Tensor::from_indices(row_token, {p.rows()});
  p.row_slot = Tensor::from_indices(row_slot, {p.rows()});
}

// The same plan on expert_index's CUDA device. Keys in the CPU's order (slot
// (i, j) at j * tokens + i) are sorted stably by expert; the first `capacity`
// slots of each expert are kept, so the ranks, and with them the whole plan,
// equal the CPU's.
void build_plan_cuda(const Tensor& expert_index, RoutingPlan& p) {
  const Device device = expert_index.device();
  const int64_t m = p.tokens * p.k;
  p.counts.assign(p.experts, 0);
  p.offsets.assign(p.experts + 1, 0);
  p.position = Tensor::empty({p.tokens, p.k}, DType::Int64, device);
  if (m == 0) {
    p.row_token = p.row_slot = Tensor::empty({0}, DType::Int64, device);
    return;
  }
  Tensor keys = Tensor::empty({p.k, p.tokens}, DType::Int64, device);
  keys.copy_(expert_index.as_strided({p.k, p.tokens}, {expert_index.strides()[1], expert_index.strides()[0]},
                                     expert_index.offset()));
  keys = keys.as_strided({m}, {1}, 0);
  CudaCountingSort sorted;
  try {
    sorted = MOEGRAD_CUDA(cuda_counting_sort(keys, p.experts, "make_routing_plan"));
  } catch (const Error&) {  // an index out of range: name the first, as the CPU does
    std::vector<int64_t> host;
    try {
      host = expert_index.to_indices();
    } catch (const Error&) {  // the device itself failed: the sort's error says so
    }
    check_expert_indices(host, p);
    throw;
  }
  const std::vector<int64_t> sorted_offsets = sorted.offsets.to_indices();  // the one copy back of the plan
  for (int64_t e = 0; e < p.experts; ++e) {
    const int64_t all = sorted_offsets[e + 1] - sorted_offsets[e];
    p.counts[e] = p.capacity > 0 ? std::min(all, p.capacity) : all;
    p.offsets[e + 1] = p.offsets[e] + p.counts[e];
  }
  const Tensor kept_offsets = Tensor::from_indices(p.offsets, {p.experts + 1}).to(device);
  p.row_token = Tensor::empty({p.rows()}, DType::Int64, device);
  p.row_slot = Tensor::empty({p.rows()}, DType::Int64, device);
  MOEGRAD_CUDA(cuda_plan_scatter(keys, sorted.order, sorted.offsets, kept_offsets, p.tokens, p.k, p.capacity,
                                 p.position, p.row_token, p.row_slot));
}

void check_plan(const PlanPtr& plan, const char* op) { MG_CHECK(plan != nullptr, op, ": routing plan is null"); }

// Error unless t is a float tensor on the plan's device.
void check_float_for(const Tensor& t, const PlanPtr& plan, const char* op, const char* what) {
  MG_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
  MG_CHECK(t.device() == plan->device(), op, ": ", what, " is on ", t.device().str(),
           " but the routing plan was made on ", plan->device().str());
  check_float(t, op, what);
}

// ---- permute kernels: xp[r] = x[row_token[r]];  dx[i] = Σ_j dxp[position[i, j]] ----

Tensor permute_rows(const Tensor& x, const RoutingPlan& p) {
  const int64_t d = x.size(1), rows = p.rows();
  Tensor xp = Tensor::empty({rows, d}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    MOEGRAD_CUDA(cuda_permute_rows(x, p.row_token, xp));
    return xp;
  }
  const size_t row_bytes = d * dtype_size(x.dtype());
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(xp.raw_data());
  const int64_t* row_token = p.row_token.data<int64_t>();
  parallel_for(rows, grain_for(d), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) std::memcpy(dst + r * row_bytes, src + row_token[r] * row_bytes, row_bytes);
  });
  return xp;
}

Tensor permute_rows_backward(const Tensor& dxp, const RoutingPlan& p) {
  const int64_t d = dxp.size(1), k = p.k;
  if (dxp.device().is_cuda()) {
    Tensor dx = Tensor::empty({p.tokens, d}, dxp.dtype(), dxp.device());
    MOEGRAD_CUDA(cuda_permute_rows_backward(dxp, p.position, k, dx));
    return dx;
  }
  Tensor dx = Tensor::zeros({p.tokens, d}, dxp.dtype());
  const int64_t* position = p.position.data<int64_t>();
  dispatch_float(dxp.dtype(), "moe_permute backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = dxp.data<T>();
    T* out = dx.data<T>();
    parallel_for(p.tokens, grain_for(d * k), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        for (int64_t j = 0; j < k; ++j) {
          const int64_t r = position[i * k + j];
          if (r < 0) continue;
          for (int64_t c = 0; c < d; ++c) out[i * d + c] += g[r * d + c];
        }
    });
  });
  return dx;
}

// ---- grouped linear kernels: block e of rows: yp_e = xp_e W_eᵀ + b_e ----
//   dxp_e = dyp_e W_e,   dW_e = dyp_eᵀ xp_e,   db_e = Σ_rows dyp_e

// The grouped products run as one parallel region over tiles: (expert, block
// of output rows) pairs, shared out dynamically, each one single-threaded
// cpu_gemm. Tiles finer than experts keep both threads busy to the end when
// the experts' row counts differ; every output element still comes from one
// tile in a fixed order, so results do not depend on the thread count.
// Small layers (`work` operations in all) run on the calling thread: waking
// the threads would cost more than the products.
constexpr int64_t kTileRows = 128;

struct Tile {
  int64_t expert, begin, end;  // rows [begin, end) of the expert's output
  bool weight_grad;            // backward: a block of dW_e's rows, else of dxp_e's
};

// Each non-empty expert's `rows(e)` output rows in blocks of kTileRows.
template <typename Rows>
void add_tiles(std::vector<Tile>& tiles, const RoutingPlan& p, Rows rows, bool weight_grad) {
  for (int64_t e = 0; e < p.experts; ++e) {
    if (p.counts[e] == 0) continue;
    for (int64_t r = 0; r < rows(e); r += kTileRows)
      tiles.push_back({e, r, std::min(rows(e), r + kTileRows), weight_grad});
  }
}

template <typename F>
void for_each_tile(const std::vector<Tile>& tiles, int64_t work, F f) {
  const int64_t n = static_cast<int64_t>(tiles.size());
#pragma omp parallel for schedule(dynamic, 1) if (work > kParallelGrain)
  for (int64_t t = 0; t < n; ++t) f(tiles[t]);
}

// Rows [r0, r0 + n) of a contiguous [rows, cols] tensor as a [n, cols] view.
Tensor row_block(const Tensor& t, int64_t r0, int64_t n) {
  const int64_t cols = t.size(1);
  return t.as_strided({n, cols}, {cols, 1}, t.offset() + r0 * cols);
}

// Matrix e of a contiguous [E, rows, cols] tensor, or its transpose (a
// column-major view, which cuda_gemm reads without a copy). This and
// `transposed` serve the CUDA calls only ([[maybe_unused]]: a CPU-only build
// names them inside MOEGRAD_CUDA, which does not evaluate its call).
[[maybe_unused]] Tensor matrix_at(const Tensor& t, int64_t e, bool transposed = false) {
  const int64_t r = t.size(1), c = t.size(2), off = t.offset() + e * r * c;
  return transposed ? t.as_strided({c, r}, {1, c}, off) : t.as_strided({r, c}, {c, 1}, off);
}

// The transpose of a contiguous [n, cols] block as a column-major [cols, n] view.
[[maybe_unused]] Tensor transposed(const Tensor& block) {
  return block.as_strided({block.size(1), block.size(0)}, {1, block.size(1)}, block.offset());
}

Tensor expert_products(const Tensor& xp, const Tensor& w, const Tensor& b, const RoutingPlan& p) {
  const int64_t out_f = w.size(1), in_f = w.size(2);
  Tensor yp = Tensor::empty({p.rows(), out_f}, xp.dtype(), xp.device());
  if (xp.device().is_cuda()) {
    for (int64_t e = 0; e < p.experts; ++e) {
      const int64_t r0 = p.offsets[e], n = p.counts[e];
      if (n == 0) continue;
      Tensor y = row_block(yp, r0, n);
      if (b.defined()) y.copy_(b.as_strided({1, out_f}, {out_f, 1}, b.offset() + e * out_f));
      MOEGRAD_CUDA(cuda_gemm(row_block(xp, r0, n), matrix_at(w, e, true), y, 1.0, b.defined() ? 1.0 : 0.0));
    }
    return yp;
  }
  std::vector<Tile> tiles;
  add_tiles(tiles, p, [&](int64_t e) { return p.counts[e]; }, false);
  dispatch_float(xp.dtype(), "grouped_linear", [&](auto tag) {
    using T = typename decltype(tag)::type;
    for_each_tile(tiles, p.rows() * in_f * out_f, [&](const Tile& t) {
      const int64_t r0 = p.offsets[t.expert] + t.begin, n = t.end - t.begin;
      T* y = yp.data<T>() + r0 * out_f;
      if (b.defined())
        for (int64_t r = 0; r < n; ++r)
          std::memcpy(y + r * out_f, b.data<T>() + t.expert * out_f, out_f * sizeof(T));
      cpu_gemm<T>(n, out_f, in_f, {xp.data<T>() + r0 * in_f, in_f, false},
                  {w.data<T>() + t.expert * out_f * in_f, in_f, true}, y, out_f, b.defined());
    });
  });
  return yp;
}

struct LinearGrads {
  Tensor dxp, dw, db;
};

LinearGrads expert_products_backward(const Tensor& dyp, const Tensor& xp, const Tensor& w, bool has_bias,
                                     const RoutingPlan& p) {
  const int64_t E = p.experts, out_f = w.size(1), in_f = w.size(2);
  const Device device = xp.device();
  if (device.is_cuda()) {
    LinearGrads g{Tensor::empty(xp.shape(), xp.dtype(), device),
                  Tensor::zeros(w.shape(), w.dtype(), device),  // an expert without rows keeps 0
                  has_bias ? Tensor::zeros({E, out_f}, w.dtype(), device) : Tensor()};
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r0 = p.offsets[e], n = p.counts[e];
      if (n == 0) continue;
      Tensor dy = row_block(dyp, r0, n);
      MOEGRAD_CUDA(cuda_gemm(dy, matrix_at(w, e), row_block(g.dxp, r0, n)));               // dxp_e = dy W_e
      MOEGRAD_CUDA(cuda_gemm(transposed(dy), row_block(xp, r0, n), matrix_at(g.dw, e)));   // dW_e = dyᵀ xp_e
      if (has_bias) MOEGRAD_CUDA(cuda_sum_columns(dy, n, out_f, g.db.as_strided({out_f}, {1}, e * out_f)));
    }
    return g;
  }
  LinearGrads g{Tensor::empty(xp.shape(), xp.dtype()), Tensor::empty(w.shape(), w.dtype()),
                has_bias ? Tensor::empty({E, out_f}, w.dtype()) : Tensor()};
  // dW tiles first: each sums over all of its expert's rows, the longest units
  std::vector<Tile> tiles;
  add_tiles(tiles, p, [&](int64_t) { return out_f; }, true);
  add_tiles(tiles, p, [&](int64_t e) { return p.counts[e]; }, false);
  dispatch_float(xp.dtype(), "grouped_linear backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t e = 0; e < E; ++e) {  // an expert without rows has zero gradients
      if (p.counts[e] > 0) continue;
      std::fill(g.dw.data<T>() + e * out_f * in_f, g.dw.data<T>() + (e + 1) * out_f * in_f, T(0));
      if (has_bias) std::fill(g.db.data<T>() + e * out_f, g.db.data<T>() + (e + 1) * out_f, T(0));
    }
    for_each_tile(tiles, 2 * p.rows() * in_f * out_f, [&](const Tile& t) {
      const int64_t r0 = p.offsets[t.expert], n = p.counts[t.expert];
      const T* dy = dyp.data<T>() + r0 * out_f;
      const T* w_e = w.data<T>() + t.expert * out_f * in_f;
      if (!t.weight_grad) {  // dxp_e[rows] = dy[rows] W_e
        cpu_gemm<T>(t.end - t.begin, in_f, out_f, {dy + t.begin * out_f, out_f, false}, {w_e, in_f, false},
                    g.dxp.data<T>() + (r0 + t.begin) * in_f, in_f, false);
        return;
      }
      // dW_e[o] = dy[:, o]ᵀ xp_e and db_e[o] = Σ_rows dy[:, o] for o in [begin, end)
      cpu_gemm<T>(t.end - t.begin, in_f, n, {dy + t.begin, out_f, true}, {xp.data<T>() + r0 * in_f, in_f, false},
                  g.dw.data<T>() + (t.expert * out_f + t.begin) * in_f, in_f, false);
      if (!has_bias) return;
      T* db = g.db.data<T>() + t.expert * out_f;
      std::fill(db + t.begin, db + t.end, T(0));
      for (int64_t r = 0; r < n; ++r)
        for (int64_t o = t.begin; o < t.end; ++o) db[o] += dy[r * out_f + o];
    });
  });
  return g;
}

// ---- combine kernels: y_i = Σ_j s_ij yp[pos_ij] ----
//   dyp[pos_ij] = s_ij dy_i,   ds_ij = <dy_i, yp[pos_ij]>

Tensor combine_rows(const Tensor& yp, const Tensor& scores, const RoutingPlan& p) {
  const int64_t d = yp.size(1), n = p.tokens, k = p.k;
  if (yp.device().is_cuda()) {
    Tensor y = Tensor::empty({n, d}, yp.dtype(), yp.device());
    MOEGRAD_CUDA(cuda_combine_rows(yp, scores, p.position, y));
    return y;
  }
  Tensor y = Tensor::zeros({n, d}, yp.dtype());
  const int64_t* position = p.position.data<int64_t>();
  dispatch_float(yp.dtype(), "moe_combine", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = yp.data<T>();
    const T* s = scores.data<T>();
    T* out = y.data<T>();
    parallel_for(n, grain_for(d * k), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        for (int64_t j = 0; j < k; ++j) {
          const int64_t r = position[i * k + j];
          if (r < 0) continue;
          const T sc = s[i * k + j];
          for (int64_t c = 0; c < d; ++c) out[i * d + c] += sc * src[r * d + c];
        }
    });
  });
  return y;
}

// dyp and dscores from dy.
std::pair<Tensor, Tensor> combine_rows_backward(const Tensor& dy, const Tensor& yp, const Tensor& scores,
                                                const RoutingPlan& p) {
  const Device device = yp.device();
  const int64_t d = yp.size(1), n = p.tokens, k = p.k;
  Tensor dyp = Tensor::empty(yp.shape(), yp.dtype(), device);
  if (device.is_cuda()) {
    Tensor ds = Tensor::empty(scores.shape(), scores.dtype(), device);
    MOEGRAD_CUDA(cuda_combine_rows_backward(dy, yp, scores, p.position, dyp, ds));
    return {dyp, ds};
  }
  Tensor ds = Tensor::zeros(scores.shape(), scores.dtype());
  const int64_t* position = p.position.data<int64_t>();
  dispatch_float(yp.dtype(), "moe_combine backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = dy.data<T>();
    const T* src = yp.data<T>();
    const T* s = scores.data<T>();
    T* dsrc = dyp.data<T>();
    T* dsc = ds.data<T>();
    parallel_for(n, grain_for(d * k), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        for (int64_t j = 0; j < k; ++j) {
          const int64_t r = position[i * k + j];
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
  return {dyp, ds};
}

}  // namespace

PlanPtr make_routing_plan(const Tensor& expert_index, int64_t experts, double capacity_factor) {
  MG_CHECK(expert_index.defined(), "make_routing_plan: expert_index is an undefined tensor");
  check_index(expert_index, expert_index.device(), "make_routing_plan", "expert_index");
  MG_CHECK(expert_index.dim() == 2, "make_routing_plan: expert_index must be [tokens, k], got ",
           shape_str(expert_index.shape()));
  MG_CHECK(experts > 0, "make_routing_plan: number of experts must be positive, got ", experts);
  MG_CHECK(std::isfinite(capacity_factor),
           "make_routing_plan: capacity_factor must be finite (<= 0: no capacity), got ", capacity_factor);
  auto plan = std::make_shared<RoutingPlan>();
  RoutingPlan& p = *plan;
  p.tokens = expert_index.size(0);
  p.k = expert_index.size(1);
  p.experts = experts;
  if (capacity_factor > 0) {  // at most every slot: a larger capacity drops nothing either
    const double capacity = std::ceil(capacity_factor * p.tokens * p.k / static_cast<double>(experts));
    p.capacity = static_cast<int64_t>(std::min(capacity, static_cast<double>(p.tokens * p.k)));
  }
  if (expert_index.device().is_cuda()) {
    build_plan_cuda(expert_index, p);  // the sort checks the range on the device
    return plan;
  }
  const std::vector<int64_t> idx = expert_index.to_indices();
  check_expert_indices(idx, p);
  build_plan(idx, p);
  return plan;
}

Tensor moe_permute(const Tensor& x_in, const PlanPtr& plan) {
  check_plan(plan, "moe_permute");
  check_float_for(x_in, plan, "moe_permute", "input");
  MG_CHECK(x_in.dim() == 2 && x_in.size(0) == plan->tokens, "moe_permute: expected x of shape [", plan->tokens,
           ", d], got ", shape_str(x_in.shape()));
  Tensor xp = permute_rows(contiguous(x_in).detach(), *plan);
  attach_backward(xp, "moe_permute", {x_in}, [plan](const Tensor& dxp) {
    return std::vector<Tensor>{permute_rows_backward(contiguous(dxp), *plan)};
  });
  return xp;
}

Tensor grouped_linear(const Tensor& xp_in, const Tensor& weight, const Tensor& bias, const PlanPtr& plan) {
  check_plan(plan, "grouped_linear");
  check_float_for(xp_in, plan, "grouped_linear", "input");
  check_float_for(weight, plan, "grouped_linear", "weight");
  check_same_type(xp_in, weight, "grouped_linear");
  const int64_t E = plan->experts;
  MG_CHECK(weight.dim() == 3 && weight.size(0) == E, "grouped_linear: weight must be [", E,
           ", out, in], got ", shape_str(weight.shape()));
  const int64_t out_f = weight.size(1), in_f = weight.size(2);
  MG_CHECK(xp_in.dim() == 2 && xp_in.size(0) == plan->rows() && xp_in.size(1) == in_f,
           "grouped_linear: expected input [", plan->rows(), ", ", in_f, "], got ", shape_str(xp_in.shape()));
  if (bias.defined()) {
    check_float_for(bias, plan, "grouped_linear", "bias");
    check_same_type(xp_in, bias, "grouped_linear");
    MG_CHECK(bias.dim() == 2 && bias.size(0) == E && bias.size(1) == out_f, "grouped_linear: bias must be [", E,
             ", ", out_f, "], got ", shape_str(bias.shape()));
  }
  Tensor xp = contiguous(xp_in).detach(), w = contiguous(weight).detach();
  Tensor yp = expert_products(xp, w, bias.defined() ? contiguous(bias).detach() : Tensor(), *plan);
  std::vector<Tensor> inputs{xp_in, weight};
  if (bias.defined()) inputs.push_back(bias);
  attach_backward(yp, "grouped_linear", inputs, [plan, xp, w, has_bias = bias.defined()](const Tensor& dyp) {
    LinearGrads g = expert_products_backward(contiguous(dyp), xp, w, has_bias, *plan);
    std::vector<Tensor> grads{g.dxp, g.dw};
    if (has_bias) grads.push_back(g.db);
    return grads;
  });
  return yp;
}

Tensor moe_combine(const Tensor& yp_in, const Tensor& scores_in, const PlanPtr& plan) {
  check_plan(plan, "moe_combine");
  check_float_for(yp_in, plan, "moe_combine", "expert outputs");
  check_float_for(scores_in, plan, "moe_combine", "scores");
  check_same_type(yp_in, scores_in, "moe_combine");
  MG_CHECK(yp_in.dim() == 2 && yp_in.size(0) == plan->rows(), "moe_combine: expected expert outputs [",
           plan->rows(), ", d], got ", shape_str(yp_in.shape()));
  MG_CHECK(scores_in.shape() == (Shape{plan->tokens, plan->k}), "moe_combine: expected scores [", plan->tokens,
           ", ", plan->k, "], got ", shape_str(scores_in.shape()));
  Tensor yp = contiguous(yp_in).detach(), scores = contiguous(scores_in).detach();
  Tensor y = combine_rows(yp, scores, *plan);
  attach_backward(y, "moe_combine", {yp_in, scores_in}, [plan, yp, scores](const Tensor& dy) {
    auto [dyp, ds] = combine_rows_backward(contiguous(dy), yp, scores, *plan);
    return std::vector<Tensor>{dyp, ds};
  });
  return y;
}

}  // namespace moegrad
