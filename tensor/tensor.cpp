// Tensor construction, metadata, element access, copies and conversions.
#include "tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "tensor/backend.h"
#include "tensor/random.h"
#include "tensor/strided.h"

namespace moegrad {

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape broadcast_strides(const Shape& t_shape, const Shape& t_strides, const Shape& out_shape) {
  Shape out(out_shape.size(), 0);
  int64_t lead = static_cast<int64_t>(out_shape.size()) - static_cast<int64_t>(t_shape.size());
  for (size_t d = 0; d < t_shape.size(); ++d)
    if (t_shape[d] != 1) out[lead + d] = t_strides[d];
  return out;
}

TensorImpl& Tensor::checked() const {
  MG_CHECK(impl_, "Tensor: use of an undefined tensor");
  return *impl_;
}

// Error unless the shape has at most kMaxDims sizes, none negative, and its
// bytes (2^48 at most: far beyond any machine) can be counted.
static void check_shape(const Shape& shape, DType dtype, const char* op) {
  MG_CHECK(static_cast<int64_t>(shape.size()) <= kMaxDims, op, ": at most ", kMaxDims, " dimensions, got ",
           shape.size());
  constexpr int64_t kMaxBytes = int64_t(1) << 48;
  int64_t bytes = static_cast<int64_t>(dtype_size(dtype));
  for (int64_t s : shape) {
    MG_CHECK(s >= 0, op, ": negative size in shape ", shape_str(shape));
    MG_CHECK(s == 0 || bytes <= kMaxBytes / s, op, ": shape ", shape_str(shape), " of ", dtype_name(dtype),
             " needs more than 2^48 bytes");
    bytes *= s;
  }
}

// The CUDA backend for an op that needs it; Error naming op when this build
// has none.
static DeviceBackend& need_cuda(const char* op, Device from, Device to) {
  DeviceBackend* b = cuda_backend();
  MG_CHECK(b, op, ": ", from.str(), " -> ", to.str(), " needs the CUDA backend, which this build does not have");
  return *b;
}

static void check_device(Device device, const char* op) {
  if (device.is_cuda())
    need_cuda(op, Device::cpu(), device).check_device(device, op);
  else
    MG_CHECK(device.index == 0, op, ": the CPU is device index 0, got cpu index ", device.index);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, dtype, "empty");
  check_device(device, "Tensor::empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::arange(int64_t n, DType dtype) {
  MG_CHECK(n >= 0, "arange: n must be >= 0, got ", n);
  Tensor t = empty({n}, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(i);
  });
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  check_shape(shape, dtype, "from_vector");
  MG_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
           " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) p[i] = saturate_cast<T>(values[i]);
  });
  return t;
}

Tensor Tensor::from_indices(const std::vector<int64_t>& values, const Shape& shape) {
  check_shape(shape, DType::Int64, "from_indices");
  MG_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_indices: ", values.size(),
           " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, DType::Int64);
  if (!values.empty()) std::memcpy(t.data<int64_t>(), values.data(), values.size() * sizeof(int64_t));
  return t;
}

template <typename Sample>
static Tensor random_tensor(const Shape& shape, DType dtype, Generator* gen, const char* op, Sample sample) {
  Tensor t = Tensor::empty(shape, dtype);
  Generator& g = gen ? *gen : default_generator();
  const int64_t n = t.numel();
  const uint64_t seed = g.seed(), first = g.take(static_cast<uint64_t>(n));
  dispatch_float(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.data<T>();
    parallel_for(n, kParallelGrain / 8, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = static_cast<T>(sample(seed, first + i));
    });
  });
  return t;
}

Tensor Tensor::rand(const Shape& shape, double low, double high, DType dtype, Generator* gen) {
  check_shape(shape, dtype, "rand");
  MG_CHECK(std::isfinite(low) && std::isfinite(high) && low <= high, "rand: low (", low, ") and high (", high,
           ") must be finite, low at most high");
  return random_tensor(shape, dtype, gen, "rand", [=](uint64_t s, uint64_t c) {
    return low + (high - low) * random_uniform(s, c);
  });
}

Tensor Tensor::randn(const Shape& shape, double mean, double std, DType dtype, Generator* gen) {
  check_shape(shape, dtype, "randn");
  MG_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0, "randn: mean and std must be finite, std >= 0, got ",
           mean, " and ", std);
  return random_tensor(shape, dtype, gen, "randn", [=](uint64_t s, uint64_t c) {
    return mean + std * random_normal(s, c);
  });
}

int64_t Tensor::size(int64_t d) const {
  int64_t nd = dim();
  MG_CHECK(d >= -nd && d < nd, "Tensor::size: dimension ", d, " out of range for shape ", shape_str(shape()));
  return shape()[d < 0 ? d + nd : d];
}

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (shape()[d] != 1 && strides()[d] != expect) return false;
    expect *= shape()[d];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(storage()->data()) + offset() * dtype_size(dtype());
}

static void check_cpu(const Tensor& t, const char* op) {
  MG_CHECK(t.device().is_cpu(), op, ": needs a CPU tensor, got one on ", t.device().str());
}

double Tensor::item() const {
  MG_CHECK(numel() == 1, "Tensor::item: expected one element, got shape ", shape_str(shape()));
  if (!device().is_cpu()) return to(Device::cpu()).item();
  return at(Shape(dim(), 0));
}

double Tensor::at(const Shape& index) const {
  check_cpu(*this, "Tensor::at");
  MG_CHECK(static_cast<int64_t>(index.size()) == dim(), "Tensor::at: index has ", index.size(),
           " coordinates, tensor has shape ", shape_str(shape()));
  int64_t off = offset();
  for (int64_t d = 0; d < dim(); ++d) {
    MG_CHECK(index[d] >= 0 && index[d] < shape()[d], "Tensor::at: index ", shape_str(index),
             " out of range for shape ", shape_str(shape()));
    off += index[d] * strides()[d];
  }
  return dispatch_all(dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    return static_cast<double>(static_cast<const T*>(storage()->data())[off]);
  });
}

std::vector<double> Tensor::to_vector() const {
  Tensor c = empty(shape(), DType::Float64);
  c.copy_(*this);
  const double* p = c.data<double>();
  return std::vector<double>(p, p + numel());
}

std::vector<int64_t> Tensor::to_indices() const {
  MG_CHECK(dtype() == DType::Int64, "Tensor::to_indices: expected int64, got ", dtype_name(dtype()));
  Tensor c = empty(shape(), DType::Int64);
  c.copy_(*this);
  const int64_t* p = c.data<int64_t>();
  return std::vector<int64_t>(p, p + numel());
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  need_cuda("Tensor::to", device(), target);
  check_device(target, "Tensor::to");
  Tensor out = empty(shape(), dtype(), target);
  out.copy_(*this);
  return out;
}

Tensor Tensor::as_strided(const Shape& new_shape, const Shape& new_strides, int64_t new_offset) const {
  check_shape(new_shape, dtype(), "as_strided");
  MG_CHECK(new_shape.size() == new_strides.size(), "as_strided: shape ", shape_str(new_shape), " and strides ",
           shape_str(new_strides), " differ in length");
  const int64_t capacity = static_cast<int64_t>(storage()->nbytes() / dtype_size(dtype()));
  // Each dimension's span (size - 1) · |stride| must fit in the storage on its
  // own, checked by division so that no product overflows; then their sum.
  const bool empty_view = std::find(new_shape.begin(), new_shape.end(), 0) != new_shape.end();
  bool inside = new_offset >= 0 && new_offset < capacity;
  int64_t lo = new_offset, hi = new_offset;
  for (size_t d = 0; d < new_shape.size() && inside; ++d) {
    if (new_shape[d] <= 1) continue;
    const int64_t stride = new_strides[d];
    inside = stride > std::numeric_limits<int64_t>::min() && std::abs(stride) <= (capacity - 1) / (new_shape[d] - 1);
    if (inside) (stride < 0 ? lo : hi) += (new_shape[d] - 1) * stride;
  }
  MG_CHECK(empty_view || (inside && lo >= 0 && hi < capacity), "as_strided: view ", shape_str(new_shape), " strides ",
           shape_str(new_strides), " offset ", new_offset, " reaches outside a storage of ", capacity, " elements");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage();
  impl->shape = new_shape;
  impl->strides = new_strides;
  impl->offset = new_offset;
  impl->dtype = dtype();
  return Tensor(std::move(impl));
}

// An element of type S as a D: a float that D cannot hold (NaN or out of
// range for int64, past float's range for float32) saturates (saturate_cast)
// instead of being undefined behaviour; every other conversion is exact or
// rounds as static_cast does.
template <typename D, typename S>
static D converted(S v) {
  constexpr bool narrowing = std::is_floating_point_v<S> && !std::is_same_v<D, bool> &&
                             (std::is_integral_v<D> || sizeof(D) < sizeof(S));
  if constexpr (narrowing)
    return saturate_cast<D>(static_cast<double>(v));
  else
    return static_cast<D>(v);
}

static bool broadcastable_to(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  size_t lead = to.size() - from.size();
  for (size_t d = 0; d < from.size(); ++d)
    if (from[d] != 1 && from[d] != to[lead + d]) return false;
  return true;
}

// copy_ when either side is on a device: on one device the backend's kernel
// does it (through a temporary when src shares dst's storage); across devices
// src is first made a contiguous tensor of dst's shape and dtype on its own
// device, then its bytes are copied, landing in a temporary when dst is not
// contiguous.
static void device_copy(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  DeviceBackend& be = need_cuda("Tensor::copy_", src.device(), dst.device());
  if (dst.device() == src.device()) {
    if (dst.storage() == src.storage()) {
      if (dst.raw_data() == src.raw_data() && dst.dtype() == src.dtype() && dst.shape() == src.shape() &&
          dst.strides() == src.strides())
        return;
      Tensor tmp = Tensor::empty(src.shape(), src.dtype(), src.device());
      be.copy(tmp, src);
      be.copy(dst, tmp);
      return;
    }
    be.copy(dst, src);
    return;
  }
  Tensor staged = src;
  if (!(src.is_contiguous() && src.shape() == dst.shape() && src.dtype() == dst.dtype())) {
    staged = Tensor::empty(dst.shape(), dst.dtype(), src.device());
    staged.copy_(src);
  }
  const size_t nbytes = static_cast<size_t>(dst.numel()) * dtype_size(dst.dtype());
  if (dst.is_contiguous()) {
    be.copy_bytes(dst.raw_data(), dst.device(), staged.raw_data(), staged.device(), nbytes);
    return;
  }
  Tensor landed = Tensor::empty(dst.shape(), dst.dtype(), dst.device());
  be.copy_bytes(landed.raw_data(), landed.device(), staged.raw_data(), staged.device(), nbytes);
  dst.copy_(landed);
}

void Tensor::copy_(const Tensor& src) const {
  MG_CHECK(src.defined(), "Tensor::copy_: the source is an undefined tensor");
  MG_CHECK(broadcastable_to(src.shape(), shape()), "Tensor::copy_: source of shape ", shape_str(src.shape()),
           " does not broadcast to ", shape_str(shape()));
  if (!device().is_cpu() || !src.device().is_cpu()) return device_copy(*this, src);
  if (dtype() == src.dtype() && is_contiguous() && src.is_contiguous() && src.shape() == shape()) {
    if (raw_data() != src.raw_data()) std::memmove(raw_data(), src.raw_data(), numel() * dtype_size(dtype()));
    return;
  }
  // src and this view share memory in another layout (x.copy_(transpose(x))):
  // read all of src before writing, as the device path does
  if (src.storage() == storage() && !(src.raw_data() == raw_data() && src.dtype() == dtype() &&
                                      src.shape() == shape() && src.strides() == strides())) {
    Tensor staged = Tensor::empty(src.shape(), src.dtype());
    staged.copy_(src);
    return copy_(staged);
  }
  Shape sstr = broadcast_strides(src.shape(), src.strides(), shape());
  dispatch_all(dtype(), [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    dispatch_all(src.dtype(), [&](auto stag) {
      using S = typename decltype(stag)::type;
      D* dp = static_cast<D*>(storage()->data());
      const S* sp = static_cast<const S*>(src.storage()->data());
      strided_rows<2>(shape(), {&strides(), &sstr}, [&](const std::array<int64_t, 2>& off, int64_t n,
                                                         const std::array<int64_t, 2>& st) {
        D* d = dp + offset() + off[0];
        const S* s = sp + src.offset() + off[1];
        for (int64_t i = 0; i < n; ++i) d[i * st[0]] = converted<D>(s[i * st[1]]);
      });
    });
  });
}

void Tensor::fill_(double value) const {
  if (!device().is_cpu()) {
    if (numel() > 0) need_cuda("Tensor::fill_", device(), device()).fill(*this, value);
    return;
  }
  dispatch_all(dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v = saturate_cast<T>(value);
    T* base = static_cast<T*>(storage()->data()) + offset();
    if (is_contiguous()) {
      parallel_for(numel(), kParallelGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) base[i] = v;
      });
      return;
    }
    strided_rows<1>(shape(), {&strides()}, [&](const std::array<int64_t, 1>& off, int64_t n,
                                                const std::array<int64_t, 1>& st) {
      for (int64_t i = 0; i < n; ++i) base[off[0] + i * st[0]] = v;
    });
  });
}

Tensor& Tensor::requires_grad_(bool on) {
  MG_CHECK(!on || is_floating(dtype()), "requires_grad_: only float tensors can require grad, got ",
           dtype_name(dtype()));
  MG_CHECK(is_leaf() || on, "requires_grad_: cannot turn off requires_grad on a non-leaf tensor");
  checked().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return checked().grad ? Tensor(checked().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) const {
  MG_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient shape ", shape_str(g.shape()),
           " differs from tensor shape ", shape_str(shape()));
  checked().grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::zero_grad() const { checked().grad = nullptr; }

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage();
  impl->shape = shape();
  impl->strides = strides();
  impl->offset = offset();
  impl->dtype = dtype();
  return Tensor(std::move(impl));
}

}  // namespace moegrad
