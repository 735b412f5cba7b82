// Matches moegrad against reference fixtures written by PyTorch
// (tools/make_fixtures.py, float64): a transformer LM "sgsc" whose last MoE
// layer uses the AC router, and a Soft MoE layer with AC. Outputs and every
// gradient must agree to float64 round-off.
// The fixtures are found at $MOEGRAD_TEST_FIXTURES (ctest sets it to the
// source tree's tests/fixtures), else at tests/fixtures under the working
// directory, else at fixtures/ beside the test binary or tests/fixtures in a
// folder above it (a build folder inside the checkout, or a pack of prebuilt
// programs with the fixtures copied beside them).
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "moe/soft_moe.h"
#include "moe/transformer_lm.h"
#include "nn/checkpoint.h"
#include "test_helpers.h"

using namespace moegrad;
namespace fs = std::filesystem;

namespace {

const double kTol = 1e-9;  // relative to max(1, |reference|)

// The folders searched for the fixtures, in order.
std::vector<fs::path> fixture_dirs() {
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("MOEGRAD_TEST_FIXTURES"); env && *env) dirs.emplace_back(env);
  std::error_code ec;
  dirs.push_back(fs::current_path(ec) / "tests" / "fixtures");
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    dirs.push_back(exe.parent_path() / "fixtures");
    for (fs::path p = exe.parent_path();; p = p.parent_path()) {
      dirs.push_back(p / "tests" / "fixtures");
      if (!p.has_relative_path()) break;
    }
  }
  return dirs;
}

// The path of fixture `name` in the first folder that holds it; a test
// failure listing the folders searched when none does.
std::string fixture(const std::string& name) {
  std::string searched;
  for (const fs::path& dir : fixture_dirs()) {
    std::error_code ec;
    if (fs::is_regular_file(dir / name, ec)) return (dir / name).string();
    searched += "\n  " + dir.string();
  }
  ADD_FAILURE() << "fixture " << name << " not found (set MOEGRAD_TEST_FIXTURES to the folder tests/fixtures); "
                << "searched:" << searched;
  return name;
}

// Tensors named "<prefix>.<rest>" as rest -> tensor.
TensorMap with_prefix(const TensorMap& all, const std::string& prefix) {
  TensorMap out;
  for (auto& [name, t] : all)
    if (name.rfind(prefix + ".", 0) == 0) out[name.substr(prefix.size() + 1)] = t;
  return out;
}

void expect_close(const Tensor& got, const Tensor& ref, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what << " is undefined";
  ASSERT_EQ(got.shape(), ref.shape()) << what;
  std::vector<double> g = got.to_vector(), r = ref.to_vector();
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::fabs(g[i] - r[i]) / std::max(1.0, std::fabs(r[i])));
  EXPECT_LT(worst, kTol) << what << ": worst relative difference " << worst;
}

}  // namespace

TEST(Fixtures, TransformerLMWithACRouterMatchesPyTorch) {
  SafetensorsFile f = load_safetensors(fixture("lm_sgsc_ac.safetensors"));
  LMConfig c;
  c.vocab = 13, c.max_len = 8, c.arch = "sgsc";
  c.block.dim = 8, c.block.heads = 2;
  c.block.moe.experts = 4, c.block.moe.k = 2, c.block.moe.hidden = 6;
  TransformerLM lm(c, InitOptions{DType::Float64, nullptr});
  load_module_state(lm, with_prefix(f.tensors, "param"));
  LMOutput o = lm.forward(f.tensors.at("inputs.ids"), f.tensors.at("inputs.targets"));
  expect_close(o.logits, f.tensors.at("out.logits"), "logits");
  expect_close(o.loss, f.tensors.at("out.loss"), "loss");
  expect_close(o.balance_loss, f.tensors.at("out.balance_loss"), "balance loss");
  expect_close(o.z_loss, f.tensors.at("out.z_loss"), "z loss");
  add(o.loss, add(mul(o.balance_loss, 0.01), mul(o.z_loss, 0.001))).backward();
  TensorMap grads = with_prefix(f.tensors, "grad");
  for (auto& [name, p] : lm.named_parameters()) {
    ASSERT_TRUE(grads.count(name)) << "fixture lacks the gradient of " << name;
    expect_close(p.grad(), grads.at(name), "gradient of " + name);
  }
}

TEST(Fixtures, SoftMoEWithACMatchesPyTorch) {
  SafetensorsFile f = load_safetensors(fixture("soft_moe_ac.safetensors"));
  SoftMoEConfig c;
  c.dim = 6, c.hidden = 7, c.experts = 3, c.slots = 2, c.use_ac = true, c.mix_k = 2;
  SoftMoE layer(c, InitOptions{DType::Float64, nullptr});
  load_module_state(layer, with_prefix(f.tensors, "param"));
  Tensor x = clone(f.tensors.at("inputs.x"));
  x.requires_grad_();
  SoftMoEOutput o = layer.forward(x, {f.tensors.at("inputs.prev_indices"), f.tensors.at("inputs.prev_logits")});
  expect_close(o.y, f.tensors.at("out.y"), "y");
  EXPECT_EQ(o.assignments.indices.to_indices(), f.tensors.at("out.next_indices").to_indices());
  o.y.backward(f.tensors.at("inputs.dy"));
  expect_close(x.grad(), f.tensors.at("grad.x"), "gradient of x");
  TensorMap grads = with_prefix(f.tensors, "grad");
  for (auto& [name, p] : layer.named_parameters()) expect_close(p.grad(), grads.at(name), "gradient of " + name);
}
