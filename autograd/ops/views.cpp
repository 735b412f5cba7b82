// Views: reshape, permute/transpose, narrow/slice, expand, squeeze/unsqueeze
// share x's storage (reshape copies only when x's layout cannot be viewed
// contiguously); contiguous and clone copy. Each backward maps the gradient
// back to x's shape: the inverse view, zeros outside a slice, or a sum over
// expanded dimensions.
#include <numeric>

#include "autograd/ops/util.h"

namespace moegrad {

Tensor contiguous(const Tensor& x) {
  MG_CHECK(x.defined(), "contiguous: undefined tensor");
  if (x.is_contiguous()) return x;
  return clone(x);
}

Tensor clone(const Tensor& x) {
  MG_CHECK(x.defined(), "clone: undefined tensor");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  out.copy_(x);
  attach_backward(out, "clone", {x}, [](const Tensor& dout) { return std::vector<Tensor>{dout}; });
  return out;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  MG_CHECK(x.defined(), "reshape: undefined tensor");
  Shape target = shape;
  int64_t known = 1, infer = -1;
  for (size_t d = 0; d < target.size(); ++d) {
    if (target[d] == -1) {
      MG_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(d);
    } else {
      MG_CHECK(target[d] >= 0, "reshape: negative size in ", shape_str(shape));
      known *= target[d];
    }
  }
  if (infer >= 0) {
    MG_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot reshape ", shape_str(x.shape()), " into ",
             shape_str(shape));
    target[infer] = x.numel() / known;
  }
  MG_CHECK(shape_numel(target) == x.numel(), "reshape: cannot reshape ", shape_str(x.shape()), " (",
           x.numel(), " elements) into ", shape_str(shape));
  if (target == x.shape()) return x;
  Tensor src = x.is_contiguous() ? x.detach() : contiguous(x).detach();
  Tensor out = src.as_strided(target, contiguous_strides(target), src.offset());
  Shape in_shape = x.shape();
  attach_backward(out, "reshape", {x}, [in_shape](const Tensor& dout) {
    return std::vector<Tensor>{reshape(dout, in_shape)};
  });
  return out;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  MG_CHECK(x.defined(), "permute: undefined tensor");
  const int64_t nd = x.dim();
  MG_CHECK(static_cast<int64_t>(dims.size()) == nd, "permute: got ", dims.size(), " dims for a tensor of shape ",
           shape_str(x.shape()));
  std::vector<int64_t> perm(nd), inverse(nd, -1);
  Shape shape(nd), strides(nd);
  for (int64_t i = 0; i < nd; ++i) {
    perm[i] = wrap_dim(dims[i], nd, "permute");
    MG_CHECK(inverse[perm[i]] < 0, "permute: dimension ", dims[i], " repeated in ", shape_str(dims));
    inverse[perm[i]] = i;
    shape[i] = x.shape()[perm[i]];
    strides[i] = x.strides()[perm[i]];
  }
  Tensor out = x.as_strided(shape, strides, x.offset());
  attach_backward(out, "permute", {x}, [inverse](const Tensor& dout) {
    return std::vector<Tensor>{permute(dout, inverse)};
  });
  return out;
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  MG_CHECK(x.defined(), "transpose: undefined tensor");
  const int64_t d0 = wrap_dim(dim0, x.dim(), "transpose"), d1 = wrap_dim(dim1, x.dim(), "transpose");
  std::vector<int64_t> dims(x.dim());
  std::iota(dims.begin(), dims.end(), 0);
  if (x.dim() > 0) std::swap(dims[d0], dims[d1]);  // a 0-d tensor (dims 0 and -1) is its own transpose
  return permute(x, dims);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  MG_CHECK(x.defined(), "slice: undefined tensor");
  MG_CHECK(x.dim() > 0, "slice: cannot slice a 0-d tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "slice");
  const int64_t n = x.shape()[d];
  MG_CHECK(step > 0, "slice: step must be positive, got ", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = x.shape(), strides = x.strides();
  shape[d] = end > start ? (end - start - 1) / step + 1 : 0;  // no overflow for any step
  if (shape[d] > 1) strides[d] *= step;                       // step < n here
  Tensor out = x.as_strided(shape, strides, x.offset() + start * x.strides()[d]);
  Shape in_shape = x.shape();
  attach_backward(out, "slice", {x}, [in_shape, d, start, end, step](const Tensor& dout) {
    Tensor dx = Tensor::zeros(in_shape, dout.dtype(), dout.device());
    slice(dx, d, start, end, step).copy_(dout);
    return std::vector<Tensor>{dx};
  });
  return out;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  MG_CHECK(x.defined(), "narrow: undefined tensor");
  MG_CHECK(x.dim() > 0, "narrow: cannot narrow a 0-d tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "narrow");
  const int64_t n = x.shape()[d];
  if (start < 0) start += n;
  MG_CHECK(start >= 0 && start <= n && length >= 0 && length <= n - start, "narrow: ", length, " elements from ",
           start, " are outside dimension ", d, " of shape ", shape_str(x.shape()));
  return slice(x, d, start, start + length);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  MG_CHECK(x.defined(), "expand: undefined tensor");
  MG_CHECK(shape.size() >= x.shape().size(), "expand: cannot expand ", shape_str(x.shape()), " to fewer dims ",
           shape_str(shape));
  const size_t lead = shape.size() - x.shape().size();
  Shape out_shape = shape, strides(shape.size(), 0);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (d < lead) {
      MG_CHECK(shape[d] >= 0, "expand: invalid size ", shape[d], " in ", shape_str(shape));
      continue;
    }
    int64_t have = x.shape()[d - lead];
    if (shape[d] == -1) out_shape[d] = have;
    MG_CHECK(have == out_shape[d] || have == 1, "expand: cannot expand ", shape_str(x.shape()), " to ",
             shape_str(shape));
    strides[d] = have == out_shape[d] ? x.strides()[d - lead] : 0;
  }
  if (out_shape == x.shape()) return x;
  Tensor out = x.as_strided(out_shape, strides, x.offset());
  Shape in_shape = x.shape();
  attach_backward(out, "expand", {x}, [in_shape](const Tensor& dout) {
    return std::vector<Tensor>{sum_to(dout, in_shape)};
  });
  return out;
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  MG_CHECK(x.defined(), "squeeze: undefined tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "squeeze");
  if (x.dim() == 0) return x;
  MG_CHECK(x.shape()[d] == 1, "squeeze: dimension ", dim, " of shape ", shape_str(x.shape()), " is not 1");
  Shape shape = x.shape(), strides = x.strides();
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  Tensor out = x.as_strided(shape, strides, x.offset());
  attach_backward(out, "squeeze", {x}, [d](const Tensor& dout) { return std::vector<Tensor>{unsqueeze(dout, d)}; });
  return out;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  MG_CHECK(x.defined(), "unsqueeze: undefined tensor");
  const int64_t d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape shape = x.shape(), strides = x.strides();
  int64_t stride = d < x.dim() ? x.strides()[d] * x.shape()[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  Tensor out = x.as_strided(shape, strides, x.offset());
  attach_backward(out, "unsqueeze", {x}, [d](const Tensor& dout) { return std::vector<Tensor>{squeeze(dout, d)}; });
  return out;
}

}  // namespace moegrad
