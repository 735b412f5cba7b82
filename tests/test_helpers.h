// Helpers shared by the test suites: gradcheck assertions, random float64
// leaves, and expecting a moegrad::Error whose message mentions some text.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "moegrad.h"

namespace moegrad::testing {

// A float64 leaf with values uniform in [low, high), requiring grad.
inline Tensor leaf(const Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0) {
  Generator gen(seed);
  Tensor t = Tensor::rand(shape, low, high, DType::Float64, &gen);
  t.requires_grad_();
  return t;
}

// Element-wise |got - want| <= tol, with the failing element's position.
inline void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-12) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

// x's values (detached) in a tensor that is not contiguous, on `device`:
// every other element of a buffer twice as long in the last dimension, so an
// op reads them through strides. A 0-d x is copied as it is.
inline Tensor strided_copy(const Tensor& x, Device device = Device::cpu()) {
  if (x.dim() == 0) return x.detach().to(device);
  Shape wide = x.shape();
  wide.back() *= 2;
  Tensor view = slice(Tensor::zeros(wide, x.dtype(), device), x.dim() - 1, 0, wide.back(), 2);
  view.copy_(x.detach().to(device));
  return view;
}

// Values of a tensor (any layout) as a flat vector.
inline std::vector<double> values(const Tensor& t) { return t.to_vector(); }

// k distinct experts per token in [0, E), as top-k gives (k <= E): int64 [n, k].
inline Tensor random_assignment(int64_t n, int64_t k, int64_t E, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> pool(E);
    for (int64_t e = 0; e < E; ++e) pool[e] = e;
    for (int64_t j = 0; j < k; ++j) {
      int64_t pick = j + static_cast<int64_t>(random_uniform(g.seed(), g.take(1)) * (E - j));
      std::swap(pool[j], pool[pick]);
      idx.push_back(pool[j]);
    }
  }
  return Tensor::from_indices(idx, {n, k});
}

}  // namespace moegrad::testing

// Runs gradcheck and fails the test with its report.
#define EXPECT_GRADCHECK(fn, inputs, ...)                                          \
  do {                                                                            \
    auto gc_result_ = ::moegrad::gradcheck(fn, inputs, ##__VA_ARGS__);            \
    EXPECT_TRUE(gc_result_.ok) << gc_result_.message;                            \
  } while (0)

// Expects `stmt` to throw moegrad::Error whose message contains `text`.
#define EXPECT_MG_ERROR(stmt, text)                                                    \
  do {                                                                                \
    try {                                                                             \
      stmt;                                                                           \
      ADD_FAILURE() << "expected moegrad::Error containing \"" << (text) << "\"";     \
    } catch (const ::moegrad::Error& e_) {                                           \
      EXPECT_NE(std::string(e_.what()).find(text), std::string::npos)                 \
          << "message was: " << e_.what();                                           \
    }                                                                                 \
  } while (0)
