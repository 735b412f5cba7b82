// Views and shape ops: reshape, permute, transpose, narrow, slice, expand,
// squeeze, unsqueeze, contiguous, clone — values, gradchecks and errors.
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::leaf;

using Fn = std::function<Tensor(const Tensor&)>;

TEST(Views, GradcheckEachView) {
  // weight the view's output by fixed non-uniform constants so gradients differ per element
  auto weighted = [](const Fn& f) {
    return [f](const std::vector<Tensor>& in) {
      Tensor y = f(in[0]);
      Generator g(5);
      return y * Tensor::rand(y.shape(), 0.5, 1.5, DType::Float64, &g);
    };
  };
  const std::vector<std::pair<std::string, Fn>> views = {
      {"reshape", [](const Tensor& x) { return reshape(x, {4, -1}); }},
      {"reshape non-contiguous", [](const Tensor& x) { return reshape(transpose(x, 0, 2), {-1}); }},
      {"permute", [](const Tensor& x) { return permute(x, {2, 0, 1}); }},
      {"transpose", [](const Tensor& x) { return transpose(x, -1, 0); }},
      {"narrow", [](const Tensor& x) { return narrow(x, 2, 1, 2); }},
      {"slice step", [](const Tensor& x) { return slice(x, 1, 0, 3, 2); }},
      {"slice negative", [](const Tensor& x) { return slice(x, -1, -3, -1); }},
      {"expand", [](const Tensor& x) { return expand(unsqueeze(x, 0), {3, 2, 3, 4}); }},
      {"expand size-1 dim", [](const Tensor& x) { return expand(narrow(x, 1, 0, 1), {2, 5, 4}); }},
      {"squeeze", [](const Tensor& x) { return squeeze(narrow(x, 1, 1, 1), 1); }},
      {"unsqueeze", [](const Tensor& x) { return unsqueeze(x, -1); }},
      {"contiguous", [](const Tensor& x) { return contiguous(transpose(x, 0, 1)); }},
      {"clone", [](const Tensor& x) { return clone(x); }},
  };
  for (auto& [name, f] : views) {
    SCOPED_TRACE(name);
    Tensor x = leaf({2, 3, 4}, 12);
    EXPECT_GRADCHECK(weighted(f), {x});
  }
}

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

TEST(Views, Errors) {
  Tensor x = Tensor::zeros({2, 3});
  EXPECT_MG_ERROR(reshape(x, {4, 2}), "reshape: cannot reshape [2, 3] (6 elements) into [4, 2]");
  EXPECT_MG_ERROR(reshape(x, {-1, -1}), "more than one -1");
  EXPECT_MG_ERROR(permute(x, {0}), "permute: got 1 dims for a tensor of shape [2, 3]");
  EXPECT_MG_ERROR(permute(x, {0, 0}), "repeated");
  EXPECT_MG_ERROR(transpose(x, 0, 2), "transpose: dimension 2 out of range");
  EXPECT_MG_ERROR(narrow(x, 1, 2, 2), "narrow: range [2, 4) outside dimension 1 of shape [2, 3]");
  EXPECT_MG_ERROR(slice(x, 0, 0, 2, 0), "slice: step must be positive");
  EXPECT_MG_ERROR(expand(x, {2, 4}), "expand: cannot expand [2, 3] to [2, 4]");
  EXPECT_MG_ERROR(expand(x, {3}), "fewer dims");
  EXPECT_MG_ERROR(squeeze(x, 0), "squeeze: dimension 0 of shape [2, 3] is not 1");
  EXPECT_MG_ERROR(unsqueeze(x, 4), "unsqueeze: dimension 4 out of range");
}
