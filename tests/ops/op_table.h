// The op table: one list of the library's differentiable ops (autograd/ops,
// the layers' functional ops, the MoE ops), each entry an op applied to
// inputs of given shapes with given options. tests/ops/test_op_table.cpp
// turns every entry into a float64 finite-difference gradient check, a
// CUDA-vs-CPU parity check and bad-input checks, so an op added here gets
// all three.
#pragma once
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "tensor/tensor.h"

namespace moegrad::testing {

// How one input of an entry is made.
struct OpInput {
  enum class Kind {
    Uniform,     // floats uniform in [low, high)
    Signed,      // floats with |value| in [0.1, 1), flat index i negative when i % 3 == 1 (ops with a
                 // kink at 0): both signs in every row, and in the table's column slices
    Fixed,       // the given values in the given dtype (indices, masks), or as floats when differentiated
    Mask,        // random bools
  };
  Kind kind = Kind::Uniform;
  Shape shape;
  double low = -1.0, high = 1.0;  // Uniform
  std::vector<double> values;     // Fixed
  DType dtype = DType::Float64;   // Fixed
  bool grad = false;              // the gradient check and the parity check differentiate it
};

OpInput uniform_in(const Shape& shape, double low = -1.0, double high = 1.0);
OpInput signed_in(const Shape& shape);
OpInput constant_in(const Shape& shape);  // uniform in [-1, 1), not differentiated
OpInput index_in(const std::vector<int64_t>& values, const Shape& shape);
OpInput index_in(const std::vector<int64_t>& values);  // 1-d
OpInput mask_in(const Shape& shape);
OpInput mask_in(const std::vector<double>& values, const Shape& shape);
OpInput fixed_in(const std::vector<double>& values, const Shape& shape);  // floats, differentiated

// The tensor for an input on the CPU: float kinds in `float_dtype`, drawn
// from `seed`; differentiated inputs require grad.
Tensor make_input(const OpInput& input, DType float_dtype, uint64_t seed);

// A shape for input `input` that the op must refuse.
struct BadShape {
  size_t input;
  Shape shape;
};

// How close the device must come to the CPU (tests/test_cuda_helpers.h):
// elementwise results, or results with a GEMM or long dot product inside.
enum class ParityTol { Pointwise, Gemm };

struct OpCase {
  OpCase(std::string op, const std::string& name, std::vector<OpInput> inputs, TensorFunction fn);

  std::string op;                   // the function whose errors name it ("softmax: ...")
  std::vector<std::string> also;    // other functions inside fn whose errors may come first
  std::string name;                 // unique, a readable test name ([A-Za-z0-9_])
  std::vector<OpInput> inputs;
  TensorFunction fn;                // of the inputs in order, on any device
  ParityTol tol = ParityTol::Pointwise;
  std::vector<BadShape> bad_shapes;
  bool float_only = true;           // an int64 differentiated input is an Error (views take any dtype)
  GradcheckOptions gradcheck;

  OpCase& gemm();
  OpCase& any_dtype();
  OpCase& bad_shape(size_t input, const Shape& shape);
  OpCase& errors_from(const std::string& other);
};

// Every entry, in a fixed order; names are unique.
const std::vector<OpCase>& op_table();

}  // namespace moegrad::testing
