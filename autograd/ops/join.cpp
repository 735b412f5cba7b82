// concat and stack: join tensors of one dtype along a dim (stack along a new
// one). The result is a new contiguous tensor; each input is copied into its
// slice. Backward: each input's gradient is its slice of dout (a narrow view).
// stack is concat of the inputs unsqueezed at dim. Any dtype is accepted
// (integer tensors simply carry no gradient).
#include "autograd/ops/util.h"

namespace moegrad {

namespace {

// Error unless xs is non-empty and all its tensors are defined, of one dtype
// and device, and of rank >= min_rank.
void check_join(const std::vector<Tensor>& xs, const char* op, int64_t min_rank) {
  MG_CHECK(!xs.empty(), op, ": expected at least one tensor, got an empty list");
  for (size_t k = 0; k < xs.size(); ++k) {
    MG_CHECK(xs[k].defined(), op, ": tensor ", k, " is undefined");
    MG_CHECK(xs[k].dim() >= min_rank, op, ": tensor ", k, " is 0-d and has no dimension to join along");
    MG_CHECK(xs[k].dtype() == xs[0].dtype(), op, ": tensor ", k, " has dtype ", dtype_name(xs[k].dtype()),
             ", tensor 0 has ", dtype_name(xs[0].dtype()));
    MG_CHECK(xs[k].device() == xs[0].device(), op, ": tensor ", k, " is on ", xs[k].device().str(),
             ", tensor 0 on ", xs[0].device().str());
  }
}

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  check_join(xs, "concat", 1);
  const Shape& first = xs[0].shape();
  const int64_t d = wrap_dim(dim, xs[0].dim(), "concat");
  Shape out_shape = first;
  out_shape[d] = 0;
  std::vector<int64_t> sizes;
  for (size_t k = 0; k < xs.size(); ++k) {
    Shape s = xs[k].shape();
    bool match = s.size() == first.size();
    for (size_t e = 0; match && e < s.size(); ++e) match = static_cast<int64_t>(e) == d || s[e] == first[e];
    MG_CHECK(match, "concat: tensor ", k, " has shape ", shape_str(s), ", tensor 0 has ", shape_str(first),
             "; they must agree outside dimension ", d);
    sizes.push_back(s[d]);
    out_shape[d] += s[d];
  }
  Tensor out = Tensor::empty(out_shape, xs[0].dtype(), xs[0].device());
  int64_t start = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    narrow(out, d, start, sizes[k]).copy_(xs[k]);
    start += sizes[k];
  }
  attach_backward(out, "concat", xs, [d, sizes](const Tensor& dout) {
    std::vector<Tensor> dxs;
    int64_t at = 0;
    for (int64_t n : sizes) {
      dxs.push_back(narrow(dout, d, at, n));
      at += n;
    }
    return dxs;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  check_join(xs, "stack", 0);
  const int64_t d = wrap_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t k = 0; k < xs.size(); ++k) {
    MG_CHECK(xs[k].shape() == xs[0].shape(), "stack: tensor ", k, " has shape ", shape_str(xs[k].shape()),
             ", tensor 0 has ", shape_str(xs[0].shape()), "; all must be equal");
    parts.push_back(unsqueeze(xs[k], d));
  }
  return concat(parts, d);
}

}  // namespace moegrad
