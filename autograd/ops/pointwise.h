// Elementwise kernels shared by the pointwise ops: map_unary and map_binary
// produce a new contiguous tensor from inputs of any layout (broadcasting in
// map_binary). Contiguous inputs of the output's shape take a flat parallel
// loop; anything else goes through strided_rows. These are the CPU kernels:
// the ops send CUDA tensors to cuda/pointwise.h instead.
#pragma once
#include "autograd/ops/util.h"
#include "cuda/pointwise.h"
#include "tensor/backend.h"
#include "tensor/strided.h"

namespace moegrad {

// out[i] = f(x[i]) with out of dtype Out and x read as In.
template <typename Out, typename In, typename F>
Tensor map_unary(const Tensor& x, F f) {
  Tensor out = Tensor::empty(x.shape(), dtype_of<Out>::value, x.device());
  Out* o = out.data<Out>();
  const In* xp = x.data<In>();
  if (x.is_contiguous()) {
    parallel_for(x.numel(), kParallelGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = f(xp[i]);
    });
    return out;
  }
  strided_rows<2>(x.shape(), {&out.strides(), &x.strides()},
                  [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
                    for (int64_t i = 0; i < n; ++i) o[off[0] + i * st[0]] = f(xp[off[1] + i * st[1]]);
                  });
  return out;
}

// out = f(a, b) over the broadcast shape, a read as A and b as B.
template <typename Out, typename A, typename B, typename F>
Tensor map_binary(const Tensor& a, const Tensor& b, const char* op, F f) {
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, dtype_of<Out>::value, a.device());
  Out* o = out.data<Out>();
  const A* ap = a.data<A>();
  const B* bp = b.data<B>();
  if (a.is_contiguous() && b.is_contiguous() && a.shape() == shape && b.shape() == shape) {
    parallel_for(out.numel(), kParallelGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) o[i] = f(ap[i], bp[i]);
    });
    return out;
  }
  Shape as = broadcast_strides(a.shape(), a.strides(), shape);
  Shape bs = broadcast_strides(b.shape(), b.strides(), shape);
  strided_rows<3>(shape, {&out.strides(), &as, &bs},
                  [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
                    Out* oo = o + off[0];
                    const A* aa = ap + off[1];
                    const B* bb = bp + off[2];
                    for (int64_t i = 0; i < n; ++i) oo[i * st[0]] = f(aa[i * st[1]], bb[i * st[2]]);
                  });
  return out;
}

}  // namespace moegrad
