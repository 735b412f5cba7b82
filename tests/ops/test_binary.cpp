// add, sub, mul, div and their scalar forms: values, broadcasting,
// float32 against float64 and errors (gradient checks and the CUDA parity
// of these ops: the op table, tests/ops/op_table.cpp).
#include "test_helpers.h"

using namespace moegrad;

TEST(Binary, ValuesBroadcast) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float64);
  Tensor b = Tensor::from_vector({10, 20, 30}, {3}, DType::Float64);
  EXPECT_EQ((a + b).to_vector(), (std::vector<double>{11, 22, 33, 14, 25, 36}));
  EXPECT_EQ((a - b).to_vector(), (std::vector<double>{-9, -18, -27, -6, -15, -24}));
  EXPECT_EQ((a * b).to_vector(), (std::vector<double>{10, 40, 90, 40, 100, 180}));
  Tensor c = Tensor::from_vector({2, 4}, {2, 1}, DType::Float64);
  EXPECT_EQ((a / c).to_vector(), (std::vector<double>{0.5, 1, 1.5, 1, 1.25, 1.5}));
  EXPECT_EQ((1.0 - a).to_vector(), (std::vector<double>{0, -1, -2, -3, -4, -5}));
  EXPECT_EQ((6.0 / a).to_vector(), (std::vector<double>{6, 3, 2, 1.5, 1.2, 1}));
  EXPECT_EQ((a * 2.0 + 1.0).to_vector(), (std::vector<double>{3, 5, 7, 9, 11, 13}));
}

TEST(Binary, Float32MatchesFloat64) {
  Tensor a = Tensor::randn({5, 7}, 0, 1, DType::Float64);
  Tensor b = Tensor::randn({7}, 0, 1, DType::Float64);
  auto ref = (a * b + a / (b * b + 1.0)).to_vector();
  auto got = (a.to(DType::Float32) * b.to(DType::Float32) +
              a.to(DType::Float32) / (b.to(DType::Float32) * b.to(DType::Float32) + 1.0))
                 .to_vector();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-5);
}

TEST(Binary, Errors) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  EXPECT_MG_ERROR(add(a, b), "add: shapes [2, 3] and [4] do not broadcast");
  EXPECT_MG_ERROR(mul(a, Tensor::zeros({2, 3}, DType::Float64)), "mul: dtypes differ");
  EXPECT_MG_ERROR(div(a, Tensor::zeros({2, 3}, DType::Int64)), "div: second input must be float32 or float64");
  EXPECT_MG_ERROR(sub(Tensor(), a), "sub: first input is an undefined tensor");
  EXPECT_MG_ERROR(add_(a, Tensor::zeros({3, 3})), "add_");
  EXPECT_MG_ERROR(add_(expand(Tensor::zeros({1, 3}), {4, 3}), Tensor::ones({4, 3})),
                  "add_: the accumulator [4, 3] is an expanded view (stride 0 on dimension 0)");
}

// An addend that shares the accumulator's memory in another layout is read
// before the accumulator is written: acc += accᵀ as with a copy of acc.
TEST(Binary, AddInPlaceFromItsOwnMemory) {
  for (int64_t n : {3, 300}) {  // 300: the rows run on several threads
    Tensor acc = Tensor::randn({n, n}, 0, 1, DType::Float64);
    Tensor want = acc + transpose(acc, 0, 1) * 2.0;
    add_(acc, transpose(acc, 0, 1), 2.0);
    EXPECT_EQ(acc.to_vector(), want.to_vector()) << n;
    Tensor same = Tensor::randn({n}, 0, 1, DType::Float64);
    want = same * 3.0;
    add_(same, same, 2.0);  // the same elements: each read before it is written
    EXPECT_EQ(same.to_vector(), want.to_vector()) << n;
  }
}
