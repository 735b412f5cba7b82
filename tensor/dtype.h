// Element types and devices. Float32 and Float64 are the differentiable types
// (float64 is what gradient checks run in); Int64 holds indices and labels;
// Bool holds masks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "tensor/error.h"

namespace moegrad {

enum class DType : uint8_t { Float32, Float64, Int64, Bool };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
inline bool is_floating(DType dtype) { return dtype == DType::Float32 || dtype == DType::Float64; }

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

template <typename T> struct type_tag { using type = T; };

// double -> T without undefined behaviour: out-of-range values saturate
// (±inf for float, the limits for int64), NaN stays NaN for floats.
template <typename T>
T saturate_cast(double v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else if constexpr (std::is_floating_point_v<T>) {
    if (v > std::numeric_limits<T>::max()) return std::numeric_limits<T>::infinity();
    if (v < std::numeric_limits<T>::lowest()) return -std::numeric_limits<T>::infinity();
    return static_cast<T>(v);
  } else {
    if (!(v == v)) return 0;
    if (v >= 9.2233720368547758e18) return std::numeric_limits<T>::max();
    if (v <= -9.2233720368547758e18) return std::numeric_limits<T>::min();
    return static_cast<T>(v);
  }
}

// Calls f(type_tag<T>{}) with T = float or double according to dtype; any other
// dtype is an Error naming `op`.
template <typename F>
decltype(auto) dispatch_float(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::Float32: return f(type_tag<float>{});
    case DType::Float64: return f(type_tag<double>{});
    default:
      throw Error(detail::cat(op, ": expected a float32 or float64 tensor, got ", dtype_name(dtype)));
  }
}

// Like dispatch_float but also accepts int64 and bool.
template <typename F>
decltype(auto) dispatch_all(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32: return f(type_tag<float>{});
    case DType::Float64: return f(type_tag<double>{});
    case DType::Int64: return f(type_tag<int64_t>{});
    case DType::Bool: return f(type_tag<bool>{});
  }
  throw Error("dispatch_all: unknown dtype");
}

}  // namespace moegrad
