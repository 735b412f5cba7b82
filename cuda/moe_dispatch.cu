// The routing-plan scatter, permute and combine kernels of moe_dispatch.h.
// Each is a grid-stride loop with one thread per output element (a slot, a
// row element, or a (token, choice) dot product) over int64 indices; a thread
// sums its terms over the choices j = 0..k-1 in order, so results are the same
// on every run. Empty launches are skipped.
#include "cuda/launch.cuh"
#include "cuda/moe_dispatch.h"

namespace moegrad {

namespace {

// One thread per sorted position p: slot q = order[p] in (choice, token)
// order; its rank among its expert's slots is p - sorted_offsets[e].
__global__ void plan_scatter(const int64_t* keys, const int64_t* order, const int64_t* sorted_offsets,
                             const int64_t* kept_offsets, int64_t tokens, int64_t k, int64_t capacity,
                             int64_t* position, int64_t* row_token, int64_t* row_slot) {
  MG_GRID_STRIDE(p, tokens * k) {
    const int64_t q = order[p], j = q / tokens, i = q - j * tokens, slot = i * k + j;
    const int64_t e = keys[q], rank = p - sorted_offsets[e];
    if (capacity > 0 && rank >= capacity) {
      position[slot] = -1;
      continue;
    }
    const int64_t row = kept_offsets[e] + rank;
    position[slot] = row;
    row_token[row] = i;
    row_slot[row] = slot;
  }
}

template <typename T>
__global__ void permute_rows(const T* x, const int64_t* row_token, int64_t rows, int64_t d, T* xp) {
  MG_GRID_STRIDE(t, rows * d) {
    const int64_t r = t / d, c = t - r * d;
    xp[t] = x[row_token[r] * d + c];
  }
}

template <typename T>
__global__ void permute_rows_backward(const T* dxp, const int64_t* position, int64_t tokens, int64_t k, int64_t d,
                                      T* dx) {
  MG_GRID_STRIDE(t, tokens * d) {
    const int64_t i = t / d, c = t - i * d;
    T acc = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t r = position[i * k + j];
      if (r >= 0) acc += dxp[r * d + c];
    }
    dx[t] = acc;
  }
}

template <typename T>
__global__ void combine_rows(const T* yp, const T* scores, const int64_t* position, int64_t tokens, int64_t k,
                             int64_t d, T* y) {
  MG_GRID_STRIDE(t, tokens * d) {
    const int64_t i = t / d, c = t - i * d;
    T acc = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t r = position[i * k + j];
      if (r >= 0) acc += scores[i * k + j] * yp[r * d + c];
    }
    y[t] = acc;
  }
}

// dyp[position[i, j], c] = scores[i, j] dy[i, c]: each row of yp is the row of
// exactly one kept slot, so every element of dyp is written once.
template <typename T>
__global__ void combine_rows_backward_yp(const T* dy, const T* scores, const int64_t* position, int64_t tokens,
                                         int64_t k, int64_t d, T* dyp) {
  MG_GRID_STRIDE(t, tokens * d) {
    const int64_t i = t / d, c = t - i * d;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t r = position[i * k + j];
      if (r >= 0) dyp[r * d + c] = scores[i * k + j] * dy[t];
    }
  }
}

// dscores[i, j] = <dy[i], yp[position[i, j]]>, one thread per slot.
template <typename T>
__global__ void combine_rows_backward_scores(const T* dy, const T* yp, const int64_t* position, int64_t tokens,
                                             int64_t k, int64_t d, T* dscores) {
  MG_GRID_STRIDE(s, tokens * k) {
    const int64_t i = s / k, r = position[s];
    double dot = 0;
    if (r >= 0)
      for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(dy[i * d + c]) * static_cast<double>(yp[r * d + c]);
    dscores[s] = static_cast<T>(dot);
  }
}

}  // namespace

void cuda_plan_scatter(const Tensor& keys, const Tensor& order, const Tensor& sorted_offsets,
                       const Tensor& kept_offsets, int64_t tokens, int64_t k, int64_t capacity,
                       const Tensor& position, const Tensor& row_token, const Tensor& row_slot) {
  if (tokens * k == 0) return;
  cuda::DeviceGuard guard(keys.device().index);
  plan_scatter<<<cuda::grid_for(tokens * k), cuda::kThreads>>>(
      keys.data<int64_t>(), order.data<int64_t>(), sorted_offsets.data<int64_t>(), kept_offsets.data<int64_t>(),
      tokens, k, capacity, position.data<int64_t>(), row_token.data<int64_t>(), row_slot.data<int64_t>());
  cuda::check_launch("plan_scatter");
}

void cuda_permute_rows(const Tensor& x, const Tensor& row_token, const Tensor& xp) {
  const int64_t rows = xp.size(0), d = xp.size(1);
  if (rows * d == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "moe_permute", [&](auto tag) {
    using T = typename decltype(tag)::type;
    permute_rows<T><<<cuda::grid_for(rows * d), cuda::kThreads>>>(x.data<T>(), row_token.data<int64_t>(), rows, d,
                                                                  xp.data<T>());
  });
  cuda::check_launch("permute_rows");
}

void cuda_permute_rows_backward(const Tensor& dxp, const Tensor& position, int64_t k, const Tensor& dx) {
  const int64_t tokens = dx.size(0), d = dx.size(1);
  if (tokens * d == 0) return;
  cuda::DeviceGuard guard(dx.device().index);
  dispatch_float(dx.dtype(), "moe_permute backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    permute_rows_backward<T><<<cuda::grid_for(tokens * d), cuda::kThreads>>>(
        dxp.data<T>(), position.data<int64_t>(), tokens, k, d, dx.data<T>());
  });
  cuda::check_launch("permute_rows_backward");
}

void cuda_combine_rows(const Tensor& yp, const Tensor& scores, const Tensor& position, const Tensor& y) {
  const int64_t tokens = y.size(0), d = y.size(1), k = scores.size(1);
  if (tokens * d == 0) return;
  cuda::DeviceGuard guard(y.device().index);
  dispatch_float(y.dtype(), "moe_combine", [&](auto tag) {
    using T = typename decltype(tag)::type;
    combine_rows<T><<<cuda::grid_for(tokens * d), cuda::kThreads>>>(yp.data<T>(), scores.data<T>(),
                                                                    position.data<int64_t>(), tokens, k, d,
                                                                    y.data<T>());
  });
  cuda::check_launch("combine_rows");
}

void cuda_combine_rows_backward(const Tensor& dy, const Tensor& yp, const Tensor& scores, const Tensor& position,
                                const Tensor& dyp, const Tensor& dscores) {
  const int64_t tokens = dy.size(0), d = dy.size(1), k = scores.size(1);
  if (tokens * k == 0) return;
  cuda::DeviceGuard guard(dy.device().index);
  dispatch_float(dy.dtype(), "moe_combine backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (tokens * d > 0) {
      combine_rows_backward_yp<T><<<cuda::grid_for(tokens * d), cuda::kThreads>>>(
          dy.data<T>(), scores.data<T>(), position.data<int64_t>(), tokens, k, d, dyp.data<T>());
      cuda::check_launch("combine_rows_backward_yp");
    }
    combine_rows_backward_scores<T><<<cuda::grid_for(tokens * k), cuda::kThreads>>>(
        dy.data<T>(), yp.data<T>(), position.data<int64_t>(), tokens, k, d, dscores.data<T>());
    cuda::check_launch("combine_rows_backward_scores");
  });
}

}  // namespace moegrad
