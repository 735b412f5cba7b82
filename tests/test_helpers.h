// Helpers shared by the test suites: gradcheck assertions, random float64
// leaves, and expecting a moegrad::Error whose message mentions some text.
#pragma once
#include <gtest/gtest.h>

#include <string>

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

// Values of a tensor (any layout) as a flat vector.
inline std::vector<double> values(const Tensor& t) { return t.to_vector(); }

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
