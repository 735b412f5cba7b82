// The routing plan, moe_permute, grouped_linear and moe_combine on CUDA
// against the CPU: plans equal element for element (with and without
// capacity, non-contiguous indices, more slots than one sort chunk, no
// tokens), each op and their composition forward and backward in float32
// and float64 (non-contiguous inputs, empty experts, dropped slots, rows
// wider than a block), an empty expert's zero gradient, and the errors
// (float64 gradchecks on the device: the op table, tests/ops/op_table.cpp).
// Tolerances: test_cuda_helpers.h (float64 1e-12 relative, float32 1e-5),
// and tests/test_cuda_gemm.cpp's for results with a GEMM inside (gemm_tol).
#include <functional>

#include "moe/dispatch.h"
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

struct PlanCase {
  int64_t n, k, E;
  double capacity_factor;
};

const std::vector<PlanCase>& plan_cases() {
  static const std::vector<PlanCase> all = {
      {50, 2, 6, 0.0}, {50, 2, 6, 0.5}, {1, 1, 1, 0.0}, {1, 1, 3, 0.0},  {300, 2, 8, 0.0},
      {300, 2, 8, 1.0}, {700, 1, 4, 0.7}, {129, 3, 5, 1.25}, {0, 2, 3, 0.0}, {40, 2, 9, 0.0}};
  return all;
}

void expect_same_plan(const RoutingPlan& got, const RoutingPlan& want, const std::string& what) {
  EXPECT_TRUE(got.device().is_cuda()) << what;
  EXPECT_EQ(got.tokens, want.tokens) << what;
  EXPECT_EQ(got.k, want.k) << what;
  EXPECT_EQ(got.experts, want.experts) << what;
  EXPECT_EQ(got.capacity, want.capacity) << what;
  EXPECT_EQ(got.counts, want.counts) << what;
  EXPECT_EQ(got.offsets, want.offsets) << what;
  EXPECT_EQ(got.position.shape(), (Shape{want.tokens, want.k})) << what;
  EXPECT_EQ(got.position.to_indices(), want.position.to_indices()) << what;
  EXPECT_EQ(got.row_token.to_indices(), want.row_token.to_indices()) << what;
  EXPECT_EQ(got.row_slot.to_indices(), want.row_slot.to_indices()) << what;
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs fn on CPU leaves and on CUDA copies of them, compares the outputs, then
// backpropagates the same random output gradient through both and compares
// every input's gradient.
void expect_matches_cpu(const Fn& cpu_fn, const Fn& cuda_fn, const std::vector<Tensor>& values, Tol tol,
                        const std::string& what) {
  std::vector<Tensor> host, device;
  for (const Tensor& v : values) {
    host.push_back(v.detach().requires_grad_());
    device.push_back(on_cuda(v).requires_grad_());
  }
  Tensor want = cpu_fn(host), got = cuda_fn(device);
  ASSERT_TRUE(got.device().is_cuda()) << what;
  expect_close(got, want, tol, what + " forward");
  Tensor g = uniform(want.shape(), want.dtype(), 99);
  want.backward(g);
  got.backward(on_cuda(g));
  for (size_t i = 0; i < host.size(); ++i) {
    ASSERT_EQ(device[i].grad().defined(), host[i].grad().defined()) << what << " input " << i;
    if (host[i].grad().defined())
      expect_close(device[i].grad(), host[i].grad(), tol, what + " grad " + std::to_string(i));
  }
}

// x or a non-contiguous view with x's values (a transposed copy transposed back).
Tensor strided(const Tensor& x) { return transpose(contiguous(transpose(x, 0, 1)), 0, 1); }

}  // namespace

TEST(CudaDispatch, PlanMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (const PlanCase& c : plan_cases())
    for (bool transposed_index : {false, true}) {
      const std::string what = "n " + std::to_string(c.n) + " k " + std::to_string(c.k) + " E " +
                               std::to_string(c.E) + " cf " + std::to_string(c.capacity_factor) +
                               (transposed_index ? " strided" : "");
      Tensor idx = random_assignment(c.n, c.k, c.E, 7 + c.n);
      Tensor didx = transposed_index ? strided(on_cuda(idx)) : on_cuda(idx);
      ASSERT_EQ(didx.to_indices(), idx.to_indices());
      PlanPtr want = make_routing_plan(idx, c.E, c.capacity_factor);
      PlanPtr got = make_routing_plan(didx, c.E, c.capacity_factor);
      expect_same_plan(*got, *want, what);
    }
  // every token on one expert: capacity drops second choices before first ones
  Tensor idx = Tensor::from_indices({0, 1, 0, 1, 0, 1, 1, 0}, {4, 2});
  expect_same_plan(*make_routing_plan(on_cuda(idx), 2, 0.5), *make_routing_plan(idx, 2, 0.5), "GShard priority");
  Tensor same = Tensor::from_indices(std::vector<int64_t>(600, 2), {600, 1});
  expect_same_plan(*make_routing_plan(on_cuda(same), 4, 1.0), *make_routing_plan(same, 4, 1.0), "one expert");
}

TEST(CudaDispatch, OpsMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  struct Case {
    int64_t n, k, E, d, o;
    double capacity_factor;
  };
  // E = 9 with few tokens leaves experts empty; capacity drops slots; d = 300 spans more than one block
  const std::vector<Case> cases = {{7, 2, 3, 3, 4, 0.0}, {12, 2, 9, 5, 3, 0.0}, {40, 2, 4, 6, 5, 0.6},
                                   {1, 1, 2, 4, 2, 0.0}, {30, 1, 3, 300, 260, 0.0}, {0, 2, 3, 4, 5, 0.0}};
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const Case& c : cases)
      for (bool strided_x : {false, true}) {
        const std::string what = std::string(dtype_name(dtype)) + " n " + std::to_string(c.n) + " E " +
                                 std::to_string(c.E) + " d " + std::to_string(c.d) + " cf " +
                                 std::to_string(c.capacity_factor) + (strided_x ? " strided" : "");
        Tensor idx = random_assignment(c.n, c.k, c.E, 3 + c.n);
        PlanPtr hp = make_routing_plan(idx, c.E, c.capacity_factor);
        PlanPtr dp = make_routing_plan(on_cuda(idx), c.E, c.capacity_factor);
        auto view = [strided_x](const Tensor& t) { return strided_x && t.dim() == 2 ? strided(t) : t; };
        Tensor x = uniform({c.n, c.d}, dtype, 1), W = uniform({c.E, c.o, c.d}, dtype, 2, -0.5, 0.5);
        Tensor b = uniform({c.E, c.o}, dtype, 3), s = uniform({c.n, c.k}, dtype, 4, 0, 1);
        Tensor xp = uniform({hp->rows(), c.d}, dtype, 5), yp = uniform({hp->rows(), c.o}, dtype, 6);
        auto permute_fn = [view](PlanPtr p) {
          return Fn([p, view](const std::vector<Tensor>& in) { return moe_permute(view(in[0]), p); });
        };
        auto linear_fn = [view](PlanPtr p) {
          return Fn([p, view](const std::vector<Tensor>& in) { return grouped_linear(view(in[0]), in[1], in[2], p); });
        };
        auto linear_no_bias_fn = [view](PlanPtr p) {
          return Fn([p, view](const std::vector<Tensor>& in) {
            return grouped_linear(view(in[0]), in[1], Tensor(), p);
          });
        };
        auto combine_fn = [view](PlanPtr p) {
          return Fn([p, view](const std::vector<Tensor>& in) { return moe_combine(view(in[0]), view(in[1]), p); });
        };
        auto all_fn = [view](PlanPtr p) {
          return Fn([p, view](const std::vector<Tensor>& in) {
            return moe_combine(gelu(grouped_linear(moe_permute(view(in[0]), p), in[1], in[2], p)), in[3], p);
          });
        };
        expect_matches_cpu(permute_fn(hp), permute_fn(dp), {x}, tol_for(dtype), what + " permute");
        expect_matches_cpu(linear_fn(hp), linear_fn(dp), {xp, W, b}, gemm_tol(dtype), what + " grouped_linear");
        expect_matches_cpu(linear_no_bias_fn(hp), linear_no_bias_fn(dp), {xp, W}, gemm_tol(dtype),
                           what + " grouped_linear no bias");
        expect_matches_cpu(combine_fn(hp), combine_fn(dp), {yp, s}, gemm_tol(dtype), what + " combine");
        expect_matches_cpu(all_fn(hp), all_fn(dp), {x, W, b, s}, gemm_tol(dtype), what + " composed");
      }
}

// The gradchecks of this composition on the device: the op table,
// tests/ops/op_table.cpp.
TEST(CudaDispatch, EmptyExpertGetsZeroGradient) {
  MG_SKIP_WITHOUT_CUDA();
  const int64_t n = 6, d = 3, o = 2, E = 4, k = 2;
  // expert 3 receives nothing: its weight and bias gradients must be exactly zero
  Tensor idx = on_cuda(Tensor::from_indices({0, 1, 1, 2, 2, 0, 0, 2, 1, 0, 2, 1}, {n, k}));
  for (double cf : {0.0, 0.7}) {
    SCOPED_TRACE(cf);
    PlanPtr p = make_routing_plan(idx, E, cf);
    Tensor x = on_cuda(leaf({n, d}, 1)).requires_grad_(), W = on_cuda(leaf({E, o, d}, 2)).requires_grad_();
    Tensor b = on_cuda(leaf({E, o}, 3)).requires_grad_(), s = on_cuda(leaf({n, k}, 4)).requires_grad_();
    Tensor y = sum(moe_combine(grouped_linear(moe_permute(x, p), W, b, p), s, p));
    y.backward();
    for (double v : narrow(W.grad(), 0, 3, 1).to_vector()) EXPECT_EQ(v, 0.0);
    for (double v : narrow(b.grad(), 0, 3, 1).to_vector()) EXPECT_EQ(v, 0.0);
  }
}

TEST(CudaDispatch, DroppedSlotsContributeZero) {
  MG_SKIP_WITHOUT_CUDA();
  PlanPtr p = make_routing_plan(on_cuda(Tensor::from_indices({0, 0, 0}, {3, 1})), 2, 0.5);  // capacity 1
  EXPECT_EQ(p->dropped(), 2);
  EXPECT_EQ(p->position.to_indices(), (std::vector<int64_t>{0, -1, -1}));
  Tensor x = on_cuda(Tensor::ones({3, 2}, DType::Float64));
  Tensor y = moe_combine(moe_permute(x, p), on_cuda(Tensor::ones({3, 1}, DType::Float64)), p);
  EXPECT_EQ(y.to_vector(), (std::vector<double>{1, 1, 0, 0, 0, 0}));
}

TEST(CudaDispatch, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  EXPECT_MG_ERROR(make_routing_plan(on_cuda(Tensor::from_indices({0, 3}, {2, 1})), 3),
                  "make_routing_plan: expert index 3 at token 1 choice 0 outside [0, 3)");
  EXPECT_MG_ERROR(make_routing_plan(on_cuda(Tensor::from_indices({0, -1}, {2, 1})), 3),
                  "make_routing_plan: expert index -1 at token 1 choice 0 outside [0, 3)");
  EXPECT_MG_ERROR(make_routing_plan(on_cuda(Tensor::zeros({2, 1})), 3), "expert_index must be int64");
  EXPECT_MG_ERROR(make_routing_plan(on_cuda(Tensor::from_indices({0}, {1})), 3), "must be [tokens, k]");
  PlanPtr dp = make_routing_plan(on_cuda(Tensor::from_indices({0, 1}, {2, 1})), 2);
  PlanPtr hp = make_routing_plan(Tensor::from_indices({0, 1}, {2, 1}), 2);
  EXPECT_MG_ERROR(moe_permute(Tensor::zeros({2, 2}), dp),
                  "moe_permute: input is on cpu but the routing plan was made on cuda:0");
  EXPECT_MG_ERROR(moe_permute(on_cuda(Tensor::zeros({2, 2})), hp),
                  "moe_permute: input is on cuda:0 but the routing plan was made on cpu");
  EXPECT_MG_ERROR(moe_permute(on_cuda(Tensor::zeros({3, 2})), dp),
                  "moe_permute: expected x of shape [2, d], got [3, 2]");
  EXPECT_MG_ERROR(moe_permute(on_cuda(Tensor::from_indices({0, 1}, {2, 1})), dp), "must be float32 or float64");
  Tensor xp = on_cuda(Tensor::zeros({2, 2}));
  EXPECT_MG_ERROR(grouped_linear(xp, Tensor::zeros({2, 4, 2}), Tensor(), dp),
                  "grouped_linear: weight is on cpu but the routing plan was made on cuda:0");
  EXPECT_MG_ERROR(grouped_linear(xp, on_cuda(Tensor::zeros({2, 4, 2})), Tensor::zeros({2, 4}), dp),
                  "grouped_linear: bias is on cpu");
  EXPECT_MG_ERROR(grouped_linear(xp, on_cuda(Tensor::zeros({2, 4, 2}, DType::Float64)), Tensor(), dp),
                  "grouped_linear: dtypes differ");
  EXPECT_MG_ERROR(grouped_linear(xp, on_cuda(Tensor::zeros({3, 2, 2})), Tensor(), dp),
                  "grouped_linear: weight must be [2, out, in], got [3, 2, 2]");
  EXPECT_MG_ERROR(moe_combine(xp, Tensor::zeros({2, 1}), dp), "moe_combine: scores is on cpu");
  EXPECT_MG_ERROR(moe_combine(xp, on_cuda(Tensor::zeros({2, 2})), dp), "moe_combine: expected scores [2, 1]");
}
