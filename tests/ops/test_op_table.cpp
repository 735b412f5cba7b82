// The three checks every entry of the op table (op_table.h) gets:
//   OpTable/OpGradcheck        float64 finite differences against the backward, on the CPU
//   CudaOpTable/OpParity       MatchesCpu: the device against the CPU, the output and every
//                              input's gradient in float32 and float64, with contiguous and
//                              with strided inputs; GradcheckOnDevice: float64, on the device
//   OpTable/OpBadInput         an int64 tensor for a float input, or a wrong shape, is a
//   CudaOpTable/OpBadInput     moegrad::Error naming the op; so is an input on another device
// The parity and device checks skip without a usable GPU
// (MG_SKIP_WITHOUT_CUDA); their instantiations start with "Cuda" so that the
// GPU verification's "Cuda*" filter selects them.
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

class OpParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpParity, MatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  const OpCase& c = GetParam();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool strided : {false, true}) {
      const std::string what = std::string(dtype_name(dtype)) + (strided ? " strided" : " contiguous");
      const Tol tol = c.tol == ParityTol::Gemm ? gemm_tol(dtype) : tol_for(dtype);
      auto to_device = [strided](const Tensor& t) { return strided ? on_cuda_like(t) : on_cuda(t); };
      std::vector<Tensor> host = make_inputs(c, dtype), device;
      for (const Tensor& h : host) {
        device.push_back(to_device(h.detach()));
        if (h.requires_grad()) device.back().requires_grad_();
      }
      Tensor want = c.fn(host), got = c.fn(device);
      ASSERT_TRUE(got.device().is_cuda()) << what;
      expect_close(got, want, tol, what + " forward");
      Tensor g = uniform(want.shape(), want.dtype(), 99);
      want.backward(g);
      got.backward(to_device(g));
      for (size_t i = 0; i < host.size(); ++i) {
        if (!host[i].requires_grad()) continue;
        ASSERT_EQ(device[i].grad().defined(), host[i].grad().defined()) << what << " input " << i;
        if (host[i].grad().defined())
          expect_close(device[i].grad(), host[i].grad(), tol, what + " gradient of input " + std::to_string(i));
      }
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
