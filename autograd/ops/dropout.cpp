// dropout: in training, zeroes each element with probability p and scales the
// kept ones by 1/(1-p); identity (x itself) in eval mode or when p == 0.
// The mask comes from the counter-based generator: the op takes numel
// counters and keeps element i (row-major order of x's shape) when
// dropout_keeps(seed, first + i, p) (tensor/random.h), so the mask depends on
// neither the thread count nor x's memory layout. The forward saves mask * scale; the
// backward is dx = dout * mask * scale. On CUDA the mask is drawn on the
// device (cuda/dropout.h) from the same counters, so it equals the CPU mask
// for the same Generator state, and the Generator advances the same way.
#include "autograd/ops/util.h"
#include "cuda/dropout.h"
#include "tensor/parallel.h"

namespace moegrad {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  check_float(x, "dropout");
  MG_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability p must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  Generator& g = gen ? *gen : default_generator();
  const uint64_t seed = g.seed(), first = g.take(static_cast<uint64_t>(x.numel()));
  const double scale = dropout_scale(p);
  Tensor mask = Tensor::empty(x.shape(), x.dtype(), x.device());  // 0 or scale
  if (x.device().is_cuda())
    MOEGRAD_CUDA(cuda_dropout_mask(mask, seed, first, p, scale));
  else
    dispatch_float(x.dtype(), "dropout", [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* m = mask.data<T>();
      parallel_for(x.numel(), kParallelGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          m[i] = dropout_keeps(seed, first + static_cast<uint64_t>(i), p) ? static_cast<T>(scale) : T(0);
      });
    });
  Tensor out = mul(x.detach(), mask);
  attach_backward(out, "dropout", {x}, [mask](const Tensor& dout) { return std::vector<Tensor>{mul(dout, mask)}; });
  return out;
}

}  // namespace moegrad
