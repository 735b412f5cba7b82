// The optimizer kernels of cuda/optim.h. The updates are one thread per
// parameter element, each reading and writing only its own element of the
// weight, the gradient and the state. Their arithmetic goes through the
// round-to-nearest intrinsics (__fmul_rn, __dadd_rn, ...), which nvcc never
// contracts into fused multiply-adds, so every operation rounds once, in the
// order the CPU loop in nn/optim.cpp writes it (IEEE sqrt and division).
// The global norm is deterministic: each tensor is cut into a number of
// blocks fixed by its size, each block reduces its slice with block_sum in a
// fixed tree, and one block sums the partial sums in order. No atomics.
#include "cuda/launch.cuh"
#include "cuda/optim.h"

namespace moegrad {

namespace cuda {
namespace {

// a op b rounded once, never fused with a neighbouring operation.
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ inline float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ inline double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ inline float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ inline double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ inline float sqrt_rn(float a) { return __fsqrt_rn(a); }
__device__ inline double sqrt_rn(double a) { return __dsqrt_rn(a); }

// SGD::update, element by element.
template <typename T>
__global__ void sgd_kernel(T* w, const T* g, T* buf, T lr, T wd, T mom, bool first, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    T d = add_rn(g[i], mul_rn(wd, w[i]));
    if (buf) d = buf[i] = first ? d : add_rn(mul_rn(mom, buf[i]), d);
    w[i] = sub_rn(w[i], mul_rn(lr, d));
  }
}

// Adam::update, element by element.
template <typename T>
__global__ void adam_kernel(T* w, const T* g, T* m, T* v, T b1, T b2, T eps, T l2, T keep, T step_size,
                            T inv_sqrt_bias2, int64_t n) {
  const T one_b1 = sub_rn(T(1), b1), one_b2 = sub_rn(T(1), b2);
  MG_GRID_STRIDE(i, n) {
    const T gi = add_rn(g[i], mul_rn(l2, w[i]));
    const T mi = add_rn(mul_rn(b1, m[i]), mul_rn(one_b1, gi));
    // (1 - b2) * gi * gi groups left to right, as on the CPU
    const T vi = add_rn(mul_rn(b2, v[i]), mul_rn(mul_rn(one_b2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    const T denom = add_rn(mul_rn(sqrt_rn(vi), inv_sqrt_bias2), eps);
    w[i] = sub_rn(mul_rn(keep, w[i]), div_rn(mul_rn(step_size, mi), denom));
  }
}

// Blocks per tensor in the norm: one per kNormSlice elements, at most kMaxNormBlocks.
constexpr int64_t kNormSlice = 16 * kThreads;
constexpr int64_t kMaxNormBlocks = 1024;

int64_t norm_blocks(int64_t n) { return std::min<int64_t>((n + kNormSlice - 1) / kNormSlice, kMaxNormBlocks); }

// partial[blockIdx.x] = Σ x² over the elements i ≡ this block's threads
// (mod blocks * kThreads), accumulated in double; every thread of the block
// reaches block_sum.
template <typename T>
__global__ void sum_squares_kernel(const T* x, int64_t n, double* partial) {
  double acc = 0;
  MG_GRID_STRIDE(i, n) {
    const double xi = static_cast<double>(x[i]);
    acc += xi * xi;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// out[0] = sqrt(Σ partial), one block: thread t sums partial[t], partial[t +
// kThreads], ... in order, then block_sum's fixed tree.
__global__ void finish_norm_kernel(const double* partial, int64_t n, double* out) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) out[0] = sqrt(acc);
}

void check_update_operand(const Tensor& t, const Tensor& w, const char* what, const char* op) {
  MG_CHECK(t.defined() && t.device() == w.device() && t.dtype() == w.dtype() && t.shape() == w.shape() &&
               t.is_contiguous(),
           op, ": ", what, " must be a contiguous ", dtype_name(w.dtype()), " ", shape_str(w.shape()), " on ",
           w.device().str(), ", got ",
           t.defined() ? detail::cat(t.is_contiguous() ? "a contiguous " : "a strided ", dtype_name(t.dtype()), " ",
                                     shape_str(t.shape()), " on ", t.device().str())
                       : std::string("an undefined tensor"));
}

void check_param(const Tensor& w, const char* op) {
  MG_CHECK(w.defined() && w.device().is_cuda() && is_floating(w.dtype()) && w.is_contiguous(), op,
           ": the parameter must be a contiguous float32/float64 tensor on a CUDA device");
  check_device(w.device(), op);
}

}  // namespace
}  // namespace cuda

void cuda_sgd_update(const Tensor& w, const Tensor& g, const Tensor& buf, double lr, double wd, double mom,
                     bool first) {
  using namespace cuda;
  const char* op = "SGD (CUDA)";
  check_param(w, op);
  check_update_operand(g, w, "the gradient", op);
  if (buf.defined()) check_update_operand(buf, w, "the momentum buffer", op);
  const int64_t n = w.numel();
  if (n == 0) return;
  DeviceGuard guard(w.device().index);
  dispatch_float(w.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    sgd_kernel<T><<<grid_for(n), kThreads>>>(w.data<T>(), g.data<T>(), buf.defined() ? buf.data<T>() : nullptr,
                                             static_cast<T>(lr), static_cast<T>(wd), static_cast<T>(mom), first, n);
  });
  check_launch("sgd_kernel");
}

void cuda_adam_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, const CudaAdamStep& s) {
  using namespace cuda;
  const char* op = "Adam (CUDA)";
  check_param(w, op);
  check_update_operand(g, w, "the gradient", op);
  check_update_operand(m, w, "the state m", op);
  check_update_operand(v, w, "the state v", op);
  const int64_t n = w.numel();
  if (n == 0) return;
  DeviceGuard guard(w.device().index);
  dispatch_float(w.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    adam_kernel<T><<<grid_for(n), kThreads>>>(w.data<T>(), g.data<T>(), m.data<T>(), v.data<T>(),
                                              static_cast<T>(s.b1), static_cast<T>(s.b2), static_cast<T>(s.eps),
                                              static_cast<T>(s.l2), static_cast<T>(s.keep),
                                              static_cast<T>(s.step_size), static_cast<T>(s.inv_sqrt_bias2), n);
  });
  check_launch("adam_kernel");
}

double cuda_global_norm(const std::vector<Tensor>& tensors) {
  using namespace cuda;
  const char* op = "clip_grad_norm (CUDA)";
  if (tensors.empty()) return 0.0;
  const Device device = tensors.front().defined() ? tensors.front().device() : Device::cpu();
  int64_t total_blocks = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    MG_CHECK(t.defined() && t.device() == device && device.is_cuda() && is_floating(t.dtype()) && t.is_contiguous(),
             op, ": tensor ", i, " must be a contiguous float32/float64 tensor on ", device.str());
    total_blocks += norm_blocks(t.numel());
  }
  check_device(device, op);
  if (total_blocks == 0) return 0.0;  // every tensor is empty
  DeviceGuard guard(device.index);
  const Tensor partial = Tensor::empty({total_blocks}, DType::Float64, device);
  const Tensor out = Tensor::empty({1}, DType::Float64, device);
  double* p = partial.data<double>();
  int64_t at = 0;
  for (const Tensor& t : tensors) {
    const int64_t n = t.numel(), blocks = norm_blocks(n);
    if (blocks == 0) continue;
    dispatch_float(t.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      sum_squares_kernel<T><<<static_cast<unsigned>(blocks), kThreads>>>(t.data<T>(), n, p + at);
    });
    check_launch("sum_squares_kernel");
    at += blocks;
  }
  finish_norm_kernel<<<1, kThreads>>>(p, total_blocks, out.data<double>());
  check_launch("finish_norm_kernel");
  return out.item();  // the one host read
}

}  // namespace moegrad
