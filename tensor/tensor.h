// Tensor: an n-d view (shape, strides in elements, offset) over shared Storage,
// plus the autograd fields (requires_grad, grad, grad_fn). A Tensor is a cheap
// handle: copies share the same TensorImpl. Differentiable operations are free
// functions declared in autograd/ops.h; this header holds construction,
// metadata, element access and the autograd handles.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/storage.h"

namespace moegrad {

struct Node;
class Generator;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;     // set on results of differentiable ops
};

Shape contiguous_strides(const Shape& shape);
int64_t shape_numel(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- construction (new contiguous storage) ---
  static Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::Float32);
  static Tensor arange(int64_t n, DType dtype = DType::Int64);
  // Values converted to dtype; values.size() must equal the shape's numel.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::Float32);
  static Tensor from_indices(const std::vector<int64_t>& values, const Shape& shape);
  // Seeded random init; uses the default generator when gen is null.
  static Tensor rand(const Shape& shape, double low = 0.0, double high = 1.0, DType dtype = DType::Float32,
                     Generator* gen = nullptr);
  static Tensor randn(const Shape& shape, double mean = 0.0, double std = 1.0, DType dtype = DType::Float32,
                      Generator* gen = nullptr);

  // --- metadata ---
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return checked().shape; }
  const Shape& strides() const { return checked().strides; }
  int64_t offset() const { return checked().offset; }
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(shape()); }
  DType dtype() const { return checked().dtype; }
  Device device() const { return checked().storage->device(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return checked().storage; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // --- element access (CPU; item, to_vector and to_indices also copy from a device) ---
  // Pointer to the first element of this view; T must match the dtype.
  template <typename T> T* data() const;
  void* raw_data() const;
  double item() const;                       // numel() == 1; copies from a device
  double at(const Shape& index) const;       // one element, any dtype, as double
  std::vector<double> to_vector() const;     // all elements in row-major order
  std::vector<int64_t> to_indices() const;   // int64 tensor -> values

  // --- non-differentiable conversions and copies ---
  Tensor to(DType dtype) const;    // new tensor (or this one if dtype matches)
  Tensor to(Device device) const;  // new tensor (or this one if device matches)
  // A view with the given layout over the same storage; bounds are checked.
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;
  // Copies src (broadcast to this shape, any dtype) into this tensor in place.
  void copy_(const Tensor& src) const;
  void fill_(double value) const;

  // --- autograd ---
  bool requires_grad() const { return checked().requires_grad; }
  // Marks a leaf as a parameter/input whose gradient is accumulated in grad().
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return checked().grad_fn == nullptr; }
  Tensor grad() const;  // undefined until a backward reached this leaf
  void set_grad(const Tensor& g) const;
  void zero_grad() const;  // sets grad to undefined
  const std::shared_ptr<Node>& grad_fn() const { return checked().grad_fn; }
  // Backpropagates from this tensor. `grad` has this tensor's shape and device
  // (a float gradient of the other precision is converted); without it the
  // tensor must hold one element and the seed is 1. The graph is freed unless
  // retain_graph.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // Same data, no grad_fn, requires_grad false.
  Tensor detach() const;

 private:
  TensorImpl& checked() const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

template <typename T>
T* Tensor::data() const {
  MG_CHECK(dtype_of<T>::value == dtype(), "Tensor::data: tensor has dtype ", dtype_name(dtype()),
           ", asked for ", dtype_name(dtype_of<T>::value));
  return static_cast<T*>(storage()->data()) + offset();
}

}  // namespace moegrad
