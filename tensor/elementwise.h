// The elementwise ops that both backends implement, named once: the CPU
// kernels (autograd/ops/binary.cpp, unary.cpp, compare.cpp) and the CUDA
// kernels (cuda/pointwise.cu, select.cu) take the same codes and constants.
#pragma once
#include <cstdint>

namespace moegrad {

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };

// Pow: x^p. Affine: p·x + q. Reciprocal: p / x. GeluErf and GeluTanh: the
// two forms of GELU (autograd/ops/unary.cpp).
enum class UnaryOp : uint8_t { Neg, Exp, Log, Sqrt, Pow, Abs, Relu, Tanh, Sigmoid, GeluErf, GeluTanh, Affine, Reciprocal };

enum class CompareOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge };

// The constants of the two GELU forms.
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
constexpr double kGeluC = 0.044715;

}  // namespace moegrad
