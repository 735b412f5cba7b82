// cross_entropy: log-softmax and negative log-likelihood fused, for logits
// [N, C] and int64 class targets [N]. Per row i with target t_i:
//   lse_i  = m_i + log(sum_j exp(x_ij - m_i)),   m_i = max_j x_ij   (stable)
//   loss   = mean over non-ignored rows of (lse_i - x_{i,t_i})        (0 if none)
// The forward saves the logits and lse per row; the backward, by hand:
//   dlogits_ij = (exp(x_ij - lse_i) - [j == t_i]) * dout / count,
// with zero rows for ignored targets.
// One node on either device; the forward keeps a private copy of the targets
// (so changing the caller's targets cannot reach the backward). CUDA logits
// take CUDA targets: they are checked on the device (one read-back per call),
// then each row is one block of cuda/softmax.cu's kernels and the loss a
// fixed-order sum over rows, so it is deterministic. On the CPU a row's max,
// exponentials and sum are Eigen's vectorised array operations (the sum in
// double).
#include <Eigen/Core>
#include <cmath>
#include <type_traits>

#include "autograd/ops/util.h"
#include "cuda/softmax.h"
#include "tensor/parallel.h"

namespace moegrad {

namespace {

// One row of C logits (or their gradients) as an Eigen array.
template <typename T>
using Row = Eigen::Map<std::conditional_t<std::is_const_v<T>, const Eigen::Array<std::remove_const_t<T>, Eigen::Dynamic, 1>,
                                          Eigen::Array<T, Eigen::Dynamic, 1>>>;

// Per-row lse and loss of the non-ignored rows (rows of x are contiguous).
template <typename T>
void cross_entropy_forward(const T* x, const int64_t* t, int64_t N, int64_t ignore_index, int64_t C, T* lse,
                           std::vector<double>& row_loss) {
  parallel_for(N, grain_for(C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      lse[i] = 0;
      if (t[i] == ignore_index) continue;
      const T* xr = x + i * C;
      const Row<const T> row(xr, C);
      const T m = row.maxCoeff();
      const double log_s = std::log((row - m).exp().template cast<double>().sum());
      lse[i] = static_cast<T>(m + log_s);
      row_loss[i] = (static_cast<double>(m) - xr[t[i]]) + log_s;
    }
  });
}

template <typename T>
void cross_entropy_backward(const T* x, const T* lse, const int64_t* t, int64_t N, int64_t ignore_index, int64_t C,
                            double scale, T* dx) {
  const T sc = static_cast<T>(scale);
  parallel_for(N, grain_for(C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T* xr = x + i * C;
      T* dxr = dx + i * C;
      if (t[i] == ignore_index) {
        std::fill(dxr, dxr + C, T(0));
        continue;
      }
      Row<T>(dxr, C) = (Row<const T>(xr, C) - lse[i]).exp() * sc;
      dxr[t[i]] -= sc;
    }
  });
}

// The count of targets != ignore_index and the first one out of range.
TargetCheck check_targets(const Tensor& targets, int64_t C, int64_t ignore_index) {
  if (targets.device().is_cuda()) return MOEGRAD_CUDA(cuda_check_targets(targets, C, ignore_index));
  const int64_t* t = targets.data<int64_t>();
  TargetCheck c;
  for (int64_t i = 0; i < targets.numel(); ++i) {
    if (t[i] == ignore_index) continue;
    if (t[i] < 0 || t[i] >= C) {
      c.first_bad = i, c.bad_value = t[i];
      break;
    }
    ++c.count;
  }
  return c;
}

void require_valid_targets(const TargetCheck& c, int64_t C, int64_t ignore_index, const char* op) {
  MG_CHECK(c.first_bad < 0, op, ": target ", c.bad_value, " at position ", c.first_bad, " is outside [0, ", C,
           ") and is not ignore_index (", ignore_index, ")");
}

// The mean loss over the non-ignored rows (count of them); fills lse [N].
Tensor cross_entropy_mean(const Tensor& x, const Tensor& t, int64_t ignore_index, int64_t count, const Tensor& lse) {
  if (x.device().is_cuda()) return MOEGRAD_CUDA(cuda_cross_entropy_forward(x, t, ignore_index, count, lse));
  const int64_t N = x.shape()[0];
  std::vector<double> row_loss(N, 0.0);
  dispatch_float(x.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_forward(x.data<T>(), t.data<int64_t>(), N, ignore_index, x.shape()[1], lse.data<T>(), row_loss);
  });
  double total = 0;  // summed in row order: deterministic
  for (double l : row_loss) total += l;
  return Tensor::scalar(count > 0 ? total / static_cast<double>(count) : 0.0, x.dtype());
}

Tensor cross_entropy_grad(const Tensor& x, const Tensor& lse, const Tensor& t, int64_t ignore_index, int64_t count,
                          const Tensor& dout) {
  if (x.device().is_cuda()) return MOEGRAD_CUDA(cuda_cross_entropy_backward(x, lse, t, ignore_index, count, dout));
  Tensor dlogits = Tensor::empty(x.shape(), x.dtype(), x.device());
  const double scale = count > 0 ? dout.item() / static_cast<double>(count) : 0.0;
  dispatch_float(x.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_backward(x.data<T>(), lse.data<T>(), t.data<int64_t>(), x.shape()[0], ignore_index, x.shape()[1],
                           scale, dlogits.data<T>());
  });
  return dlogits;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  const char* op = "cross_entropy";
  check_float(logits, op, "logits");
  MG_CHECK(logits.dim() == 2, op, ": logits must be 2-d [N, C], got shape ", shape_str(logits.shape()));
  const int64_t N = logits.shape()[0], C = logits.shape()[1];
  check_index(targets, logits.device(), op, "targets");
  MG_CHECK(targets.shape() == Shape{N}, op, ": targets must have shape [", N, "] for logits of shape ",
           shape_str(logits.shape()), ", got ", shape_str(targets.shape()));
  Tensor t = Tensor::empty({N}, DType::Int64, logits.device());
  t.copy_(targets.detach());
  const TargetCheck check = check_targets(t, C, ignore_index);
  require_valid_targets(check, C, ignore_index, op);
  const int64_t count = check.count;

  Tensor x = contiguous(logits.detach()).detach();
  Tensor lse = Tensor::empty({N}, x.dtype(), x.device());
  Tensor out = cross_entropy_mean(x, t, ignore_index, count, lse);
  attach_backward(out, op, {logits}, [x, lse, t, ignore_index, count](const Tensor& dout) {
    return std::vector<Tensor>{cross_entropy_grad(x, lse, t, ignore_index, count, dout)};
  });
  return out;
}

}  // namespace moegrad
