// Views and shape ops: reshape, permute, transpose, narrow, slice, expand,
// squeeze, unsqueeze, contiguous, clone — values, gradients through writes
// of slices and errors (gradient checks: the op table, tests/ops/op_table.cpp).
#include <limits>

#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::leaf;

TEST(Views, Values) {
  Tensor x = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {2, 3, 2}, DType::Float64);
  EXPECT_EQ(permute(x, {2, 0, 1}).to_vector(), (std::vector<double>{0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11}));
  EXPECT_EQ(slice(x, 1, 0, 3, 2).to_vector(), (std::vector<double>{0, 1, 4, 5, 6, 7, 10, 11}));
  EXPECT_EQ(squeeze(narrow(x, 1, 2, 1), 1).to_vector(), (std::vector<double>{4, 5, 10, 11}));
  EXPECT_EQ(unsqueeze(x, 1).shape(), (Shape{2, 1, 3, 2}));
  EXPECT_EQ(expand(x, {4, -1, -1, -1}).shape(), (Shape{4, 2, 3, 2}));
  EXPECT_EQ(slice(x, 0, 5, 9).shape(), (Shape{0, 3, 2}));  // clamped like Python slicing
}

TEST(Views, TransposeOf0dIsItself) {
  Tensor x = Tensor::scalar(3.0, DType::Float64);
  EXPECT_EQ(transpose(x, -1, 0).shape(), Shape{});
  EXPECT_EQ(transpose(x, 0, 0).item(), 3.0);
  EXPECT_MG_ERROR(transpose(x, 0, 1), "transpose: dimension 1 out of range for a 0-d tensor");
}

TEST(Views, GradThroughWritesOfSlices) {
  // gradient of a slice lands only inside the slice
  Tensor x = leaf({4}, 13);
  sum(slice(x, 0, 1, 3)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 1, 1, 0}));
}

// A step or bounds near int64's limits give the right (clamped) view, not a wrapped size.
TEST(Views, SliceWithExtremeArguments) {
  const int64_t big = std::numeric_limits<int64_t>::max();
  Tensor x = Tensor::from_vector({0, 1, 2, 3, 4}, {5}, DType::Float64);
  EXPECT_EQ(slice(x, 0, 0, 10, big).to_vector(), (std::vector<double>{0}));
  EXPECT_EQ(slice(x, 0, 1, big, 3).to_vector(), (std::vector<double>{1, 4}));
  EXPECT_EQ(slice(x, 0, -big, big, 2).to_vector(), (std::vector<double>{0, 2, 4}));
  EXPECT_EQ(slice(x, 0, 3, 1).numel(), 0);
  EXPECT_EQ(narrow(x, 0, 5, 0).numel(), 0);
}

TEST(Views, Errors) {
  Tensor x = Tensor::zeros({2, 3});
  EXPECT_MG_ERROR(reshape(x, {4, 2}), "reshape: cannot reshape [2, 3] (6 elements) into [4, 2]");
  EXPECT_MG_ERROR(reshape(x, {-1, -1}), "more than one -1");
  EXPECT_MG_ERROR(permute(x, {0}), "permute: got 1 dims for a tensor of shape [2, 3]");
  EXPECT_MG_ERROR(permute(x, {0, 0}), "repeated");
  EXPECT_MG_ERROR(transpose(x, 0, 2), "transpose: dimension 2 out of range");
  EXPECT_MG_ERROR(narrow(x, 1, 2, 2), "narrow: 2 elements from 2 are outside dimension 1 of shape [2, 3]");
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_MG_ERROR(narrow(x, 1, 1, big), "narrow: 9223372036854775807 elements from 1 are outside");  // 1 + big wraps
  EXPECT_MG_ERROR(narrow(x, 1, 4, 0), "narrow: 0 elements from 4 are outside");
  EXPECT_MG_ERROR(slice(x, 0, 0, 2, 0), "slice: step must be positive");
  EXPECT_MG_ERROR(expand(x, {2, 4}), "expand: cannot expand [2, 3] to [2, 4]");
  EXPECT_MG_ERROR(expand(x, {3}), "fewer dims");
  EXPECT_MG_ERROR(squeeze(x, 0), "squeeze: dimension 0 of shape [2, 3] is not 1");
  EXPECT_MG_ERROR(unsqueeze(x, 4), "unsqueeze: dimension 4 out of range");
}
