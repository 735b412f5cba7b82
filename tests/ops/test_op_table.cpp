// The three checks every entry of the op table (op_table.h) gets:
//   OpTable/OpGradcheck        float64 finite differences against the backward, on the CPU
//   OpTable/OpStrided          every input in a non-contiguous tensor (strided_copy): the
//                              same output and gradients as from contiguous inputs, on the CPU
//   CudaOpTable/OpParity       MatchesCpu: the device against the CPU, the output and every
//                              input's gradient in float32 and float64, with contiguous and
//                              with strided inputs; GradcheckOnDevice: float64, on the device
//   OpTable/OpBadInput         an int64 tensor for a float input, or a wrong shape, is a
//   CudaOpTable/OpBadInput     moegrad::Error naming the op; so is an input on another device
// The parity and device checks skip without a usable GPU
// (MG_SKIP_WITHOUT_CUDA); their instantiations start with "Cuda" so that the
// GPU verification's "Cuda*" filter selects them.
#include <algorithm>

#include "ops/op_table.h"
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace moegrad::testing {

// A failing case prints as its name.
void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }

}  // namespace moegrad::testing

namespace {

// The entry's inputs on the CPU, float inputs in `dtype`; input i is drawn
// from seed 100 + i.
std::vector<Tensor> make_inputs(const OpCase& c, DType dtype) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < c.inputs.size(); ++i) out.push_back(make_input(c.inputs[i], dtype, 100 + i));
  return out;
}

std::string entry_name(const ::testing::TestParamInfo<OpCase>& info) { return info.param.name; }

// Whether an Error's message starts with the op's name or that of an op the
// entry calls on the way (a composition), e.g. "softmax: ...".
bool names_the_op(const OpCase& c, const std::string& message) {
  std::vector<std::string> ops = c.also;
  ops.push_back(c.op);
  for (const std::string& op : ops)
    if (message.rfind(op + ":", 0) == 0) return true;
  return false;
}

class OpGradcheck : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpGradcheck, Float64) {
  const OpCase& c = GetParam();
  EXPECT_GRADCHECK(c.fn, make_inputs(c, DType::Float64), c.gradcheck);
}

INSTANTIATE_TEST_SUITE_P(OpTable, OpGradcheck, ::testing::ValuesIn(op_table()), entry_name);

// The entry's inputs through `copy` (to a device, into strided storage), differentiated as on the CPU.
template <typename Copy>
std::vector<Tensor> copies_of(const std::vector<Tensor>& host, Copy copy) {
  std::vector<Tensor> out;
  for (const Tensor& h : host) {
    out.push_back(copy(h.detach()));
    if (h.requires_grad()) out.back().requires_grad_();
  }
  return out;
}

// The output and every input's gradient of `got`'s inputs against `want`'s, after the same upstream gradient.
void expect_same_results(const OpCase& c, const std::vector<Tensor>& want_in, const std::vector<Tensor>& got_in,
                         Tol tol, const std::string& what, Tensor (*place)(const Tensor&)) {
  Tensor want = c.fn(want_in), got = c.fn(got_in);
  ASSERT_EQ(got.device().is_cuda(), got_in.front().device().is_cuda()) << what << ": the result left the inputs' device";
  expect_close(got, want, tol, what + " forward");
  Tensor g = uniform(want.shape(), want.dtype(), 99);
  want.backward(g);
  got.backward(place(g));
  for (size_t i = 0; i < want_in.size(); ++i) {
    if (!want_in[i].requires_grad()) continue;
    ASSERT_EQ(got_in[i].grad().defined(), want_in[i].grad().defined()) << what << " input " << i;
    if (want_in[i].grad().defined())
      expect_close(got_in[i].grad(), want_in[i].grad(), tol, what + " gradient of input " + std::to_string(i));
  }
}

Tensor as_is(const Tensor& t) { return t; }
Tensor strided_on_cpu(const Tensor& t) { return strided_copy(t); }
Tensor contiguous_on_cuda(const Tensor& t) { return on_cuda(t); }
Tensor strided_on_cuda(const Tensor& t) { return strided_copy(t, Device::cuda(0)); }

class OpStrided : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpStrided, MatchesContiguous) {
  const OpCase& c = GetParam();
  const std::vector<Tensor> dense = make_inputs(c, DType::Float64);
  const std::vector<Tensor> strided = copies_of(dense, strided_on_cpu);
  for (size_t i = 0; i < strided.size(); ++i) {
    if (strided[i].numel() > 1 && strided[i].size(-1) > 1) {
      ASSERT_FALSE(strided[i].is_contiguous()) << "input " << i;
    }
  }
  expect_same_results(c, dense, strided, Tol{1e-12, 1e-14}, "strided inputs", as_is);
}

INSTANTIATE_TEST_SUITE_P(OpTable, OpStrided, ::testing::ValuesIn(op_table()), entry_name);

// The entries of ops with a kink at 0 see both sides of it through their
// views (transposed, sliced): relu gives zeros and positives, abs's gradient
// is +1 and -1. A 0-d input has one side only.
TEST(OpTableInputs, KinkedOpsSeeBothSidesOfTheKink) {
  int64_t checked = 0;
  for (const OpCase& c : op_table()) {
    if (c.op != "relu" && c.op != "abs") continue;
    std::vector<Tensor> in = make_inputs(c, DType::Float64);
    if (in[0].dim() == 0) continue;
    Tensor y = c.fn(in);
    y.backward(Tensor::ones(y.shape(), y.dtype()));
    const std::vector<double> out = y.to_vector(), grad = in[0].grad().to_vector();
    auto has = [](const std::vector<double>& v, auto pred) { return std::any_of(v.begin(), v.end(), pred); };
    if (c.op == "relu") {
      EXPECT_TRUE(has(out, [](double v) { return v == 0; })) << c.name << ": no negative input";
      EXPECT_TRUE(has(out, [](double v) { return v > 0; })) << c.name << ": no positive input";
    } else {
      EXPECT_TRUE(has(grad, [](double v) { return v == -1; })) << c.name << ": no negative input";
      EXPECT_TRUE(has(grad, [](double v) { return v == 1; })) << c.name << ": no positive input";
    }
    ++checked;
  }
  EXPECT_EQ(checked, 10);  // relu and abs, each at 3 shapes, transposed and sliced
}

class OpParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpParity, MatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  const OpCase& c = GetParam();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool strided : {false, true}) {
      const std::string what = std::string(dtype_name(dtype)) + (strided ? " strided" : " contiguous");
      const Tol tol = c.tol == ParityTol::Gemm ? gemm_tol(dtype) : tol_for(dtype);
      Tensor (*place)(const Tensor&) = strided ? strided_on_cuda : contiguous_on_cuda;
      const std::vector<Tensor> host = make_inputs(c, dtype), device = copies_of(host, place);
      expect_same_results(c, host, device, tol, what, place);
    }
}

TEST_P(OpParity, GradcheckOnDevice) {
  MG_SKIP_WITHOUT_CUDA();
  const OpCase& c = GetParam();
  std::vector<Tensor> device;
  for (const Tensor& h : make_inputs(c, DType::Float64)) {
    device.push_back(on_cuda(h.detach()));
    if (h.requires_grad()) device.back().requires_grad_();
  }
  EXPECT_GRADCHECK(c.fn, device, c.gradcheck);
}

INSTANTIATE_TEST_SUITE_P(CudaOpTable, OpParity, ::testing::ValuesIn(op_table()), entry_name);

// One wrong argument of one entry.
struct BadInput {
  enum class Kind { Int64, Shape, Device };
  size_t entry;
  Kind kind;
  size_t input;
  Shape shape;  // Kind::Shape
  std::string name;
};

// The int64 and shape cases (on_device false) or the device cases: every
// differentiated input of a float-only op as int64, every listed bad shape,
// and, for an op of several tensors, each tensor alone on the device.
std::vector<BadInput> bad_inputs(bool on_device) {
  std::vector<BadInput> out;
  const std::vector<OpCase>& table = op_table();
  for (size_t e = 0; e < table.size(); ++e) {
    const OpCase& c = table[e];
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      const std::string input = "_input" + std::to_string(i);
      if (on_device && c.inputs.size() > 1)
        out.push_back({e, BadInput::Kind::Device, i, {}, c.name + input + "_on_cuda"});
      if (!on_device && c.float_only && c.inputs[i].grad)
        out.push_back({e, BadInput::Kind::Int64, i, {}, c.name + input + "_int64"});
    }
    if (!on_device)
      for (size_t b = 0; b < c.bad_shapes.size(); ++b)
        out.push_back({e, BadInput::Kind::Shape, c.bad_shapes[b].input, c.bad_shapes[b].shape,
                       c.name + "_input" + std::to_string(c.bad_shapes[b].input) + "_shape" + std::to_string(b)});
  }
  return out;
}

void PrintTo(const BadInput& bad, std::ostream* os) { *os << bad.name; }

std::string bad_name(const ::testing::TestParamInfo<BadInput>& info) { return info.param.name; }

class OpBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(OpBadInput, IsAnError) {
  const BadInput& bad = GetParam();
  if (bad.kind == BadInput::Kind::Device) MG_SKIP_WITHOUT_CUDA();
  const OpCase& c = op_table()[bad.entry];
  std::vector<Tensor> in = make_inputs(c, DType::Float64);
  Tensor& x = in[bad.input];
  switch (bad.kind) {
    case BadInput::Kind::Int64:
      x = x.detach().to(DType::Int64);
      break;
    case BadInput::Kind::Shape:
      x = Tensor::zeros(bad.shape, x.dtype());
      break;
    case BadInput::Kind::Device:
      x = on_cuda(x.detach());
      break;
  }
  try {
    c.fn(in);
    ADD_FAILURE() << "expected a moegrad::Error naming " << c.op;
  } catch (const Error& e) {
    EXPECT_TRUE(names_the_op(c, e.what())) << "the message names another op: " << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(OpTable, OpBadInput, ::testing::ValuesIn(bad_inputs(false)), bad_name);
INSTANTIATE_TEST_SUITE_P(CudaOpTable, OpBadInput, ::testing::ValuesIn(bad_inputs(true)), bad_name);

}  // namespace
