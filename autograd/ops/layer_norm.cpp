// layer_norm over the last dimension D, after llm.c's layernorm_forward /
// layernorm_backward. Per row: mean, rstd = 1/sqrt(var + eps) (biased
// variance), norm = (x - mean) * rstd, y = norm * weight + bias, where an
// undefined weight counts as 1 and an undefined bias as 0. The forward saves
// mean and rstd per row; the backward recomputes norm from them:
//   dnorm   = dy * weight
//   dx      = (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd   (parallel over rows)
//   dweight = sum over rows of dy * norm,  dbias = sum over rows of dy
// dweight and dbias are a column-parallel pass: each column is summed by one
// thread in row order, so they do not depend on the thread count.
// CUDA tensors go to cuda/layer_norm.cu: the same formulas, a row per block,
// dweight and dbias summed over fixed chunks of rows in order (deterministic).
#include <cmath>

#include "autograd/ops/util.h"
#include "cuda/layer_norm.h"
#include "tensor/parallel.h"

namespace moegrad {

namespace {

// The row sums below are SIMD reductions: their order is the vector lanes',
// not left to right, so float64 results may differ from a serial sum in the
// last bits. For float32 input the mean's double sum is exact in practice.

// w and b may be null (weight 1, bias 0).
template <typename T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows, int64_t D,
                        double eps) {
  const double inv_d = D > 0 ? 1.0 / static_cast<double>(D) : 0.0;
  parallel_for(rows, grain_for(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * D;
      T* yr = y + r * D;
      double m = 0, v = 0;
#pragma omp simd reduction(+ : m)
      for (int64_t i = 0; i < D; ++i) m += xr[i];
      m *= inv_d;
#pragma omp simd reduction(+ : v)
      for (int64_t i = 0; i < D; ++i) v += (xr[i] - m) * (xr[i] - m);
      const double s = 1.0 / std::sqrt(v * inv_d + eps);
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) {
        const double n = (xr[i] - m) * s;
        yr[i] = static_cast<T>(n * (w ? w[i] : T(1)) + (b ? b[i] : T(0)));
      }
      mean[r] = static_cast<T>(m);
      rstd[r] = static_cast<T>(s);
    }
  });
}

// dx for every row (w may be null).
template <typename T>
void layer_norm_backward_dx(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx, int64_t rows,
                            int64_t D) {
  const double inv_d = D > 0 ? 1.0 / static_cast<double>(D) : 0.0;
  parallel_for(rows, grain_for(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * D;
      const T* dyr = dy + r * D;
      T* dxr = dx + r * D;
      const double m = mean[r], s = rstd[r];
      double dnorm_mean = 0, dnorm_norm_mean = 0;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
      for (int64_t i = 0; i < D; ++i) {
        const double dnorm = dyr[i] * (w ? w[i] : T(1));
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * (xr[i] - m) * s;
      }
      dnorm_mean *= inv_d;
      dnorm_norm_mean *= inv_d;
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) {
        const double dnorm = dyr[i] * (w ? w[i] : T(1));
        dxr[i] = static_cast<T>((dnorm - dnorm_mean - (xr[i] - m) * s * dnorm_norm_mean) * s);
      }
    }
  });
}

// dweight and dbias (either may be null), parallel over columns.
template <typename T>
void layer_norm_backward_params(const T* x, const T* mean, const T* rstd, const T* dy, T* dw, T* db, int64_t rows,
                                int64_t D) {
  parallel_for(D, grain_for(rows), [&](int64_t c0, int64_t c1) {
    std::vector<double> dw_acc(c1 - c0, 0.0), db_acc(c1 - c0, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * D;
      const T* dyr = dy + r * D;
      const double m = mean[r], s = rstd[r];
      for (int64_t i = c0; i < c1; ++i) {
        dw_acc[i - c0] += dyr[i] * (xr[i] - m) * s;
        db_acc[i - c0] += dyr[i];
      }
    }
    for (int64_t i = c0; i < c1; ++i) {
      if (dw) dw[i] = static_cast<T>(dw_acc[i - c0]);
      if (db) db[i] = static_cast<T>(db_acc[i - c0]);
    }
  });
}

template <typename T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

struct LayerNormBackward : Node {
  Tensor x, weight, mean, rstd;  // x contiguous [rows, D]; weight may be undefined
  const char* name() const override { return "layer_norm"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const int64_t D = x.shape().back(), rows = mean.numel();
    Tensor dy = contiguous(dout).detach();
    Tensor dx, dweight, dbias;  // undefined unless that input requires grad
    if (inputs[0].active()) dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (inputs[1].active()) dweight = Tensor::empty({D}, x.dtype(), x.device());
    if (inputs[2].active()) dbias = Tensor::empty({D}, x.dtype(), x.device());
    if (x.device().is_cuda()) {
      if (dx.defined()) MOEGRAD_CUDA(cuda_layer_norm_backward_dx(x, weight, mean, rstd, dy, dx, rows, D));
      MOEGRAD_CUDA(cuda_layer_norm_backward_params(x, mean, rstd, dy, dweight, dbias, rows, D));
      return {dx, dweight, dbias};
    }
    dispatch_float(x.dtype(), "layer_norm backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      if (dx.defined())
        layer_norm_backward_dx(x.data<T>(), data_or_null<T>(weight), mean.data<T>(), rstd.data<T>(), dy.data<T>(),
                               dx.data<T>(), rows, D);
      if (dweight.defined() || dbias.defined())
        layer_norm_backward_params(x.data<T>(), mean.data<T>(), rstd.data<T>(), dy.data<T>(), data_or_null<T>(dweight),
                                   data_or_null<T>(dbias), rows, D);
    });
    return {dx, dweight, dbias};
  }
  void release() override { x = weight = mean = rstd = Tensor(); }
};

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const char* op = "layer_norm";
  check_float(x, op);
  MG_CHECK(x.dim() >= 1, op, ": input must have at least one dimension (normalised over the last), got a 0-d tensor");
  MG_CHECK(eps > 0 && std::isfinite(eps), op, ": eps must be positive and finite, got ", eps);
  const int64_t D = x.shape().back();
  const int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  auto check_param = [&](const Tensor& p, const char* what) {
    if (!p.defined()) return;
    check_float(p, op, what);
    check_same_type(x, p, op);
    MG_CHECK(p.shape() == Shape{D}, op, ": ", what, " must have shape [", D, "] for input of shape ",
             shape_str(x.shape()), ", got ", shape_str(p.shape()));
  };
  check_param(weight, "weight");
  check_param(bias, "bias");

  Tensor xc = contiguous(x.detach()).detach();
  Tensor w = weight.defined() ? contiguous(weight.detach()).detach() : Tensor();
  Tensor b = bias.defined() ? contiguous(bias.detach()).detach() : Tensor();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, x.dtype(), x.device());
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device());
  if (x.device().is_cuda())
    MOEGRAD_CUDA(cuda_layer_norm_forward(xc, w, b, y, mean, rstd, rows, D, eps));
  else
    dispatch_float(x.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      layer_norm_forward(xc.data<T>(), data_or_null<T>(w), data_or_null<T>(b), y.data<T>(), mean.data<T>(),
                         rstd.data<T>(), rows, D, eps);
    });

  if (any_requires_grad({x, weight, bias})) {
    auto node = std::make_shared<LayerNormBackward>();
    node->x = xc;
    node->weight = w;
    node->mean = mean;
    node->rstd = rstd;
    attach_node(y, node, {x, weight, bias});
  }
  return y;
}

}  // namespace moegrad
