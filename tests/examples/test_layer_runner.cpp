// examples/common/layer_runner (what examples/run_layer runs): for every layer
// kind, run_layer's outputs, parameters and gradients equal those of calling
// the library directly with the same parameters and upstream gradients; the
// documented tensor names are exactly what comes back; init_seed fills missing
// parameters; a round trip through safetensors files; and every bad config or
// input is an Error naming the key or tensor. The command-line program itself
// is run by ctest (tests/run_layer_cli.cmake).
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "examples/common/layer_runner.h"
#include "moe/soft_moe.h"
#include "nn/attention.h"
#include "test_helpers.h"

using namespace moegrad;
using examples::parse_config;
using examples::run_layer;
using json = nlohmann::json;

namespace {

Tensor random(const Shape& shape, uint64_t seed, DType dtype = DType::Float64) {
  Generator g(seed);
  return Tensor::rand(shape, -1.0, 1.0, dtype, &g);
}

// A fresh leaf with t's values (the direct call's input).
Tensor leaf_of(const Tensor& t) {
  Tensor l = clone(t);
  l.requires_grad_();
  return l;
}

InitOptions init(Generator& g, DType dtype = DType::Float64) { return InitOptions{dtype, &g}; }

// inputs plus the module's parameters as "param.<name>".
TensorMap with_params(TensorMap inputs, const Module& m) {
  for (auto& [name, p] : m.named_parameters()) inputs["param." + name] = p.detach();
  return inputs;
}

void expect_near(const TensorMap& got, const std::string& name, Tensor want, double tol = 1e-12) {
  ASSERT_TRUE(got.count(name)) << "run_layer returned no " << name;
  const Tensor& g = got.at(name);
  if (!want.defined()) want = Tensor::zeros(g.shape(), g.dtype());
  ASSERT_EQ(g.dtype(), want.dtype()) << name;
  ASSERT_EQ(g.shape(), want.shape()) << name;
  std::vector<double> a = g.to_vector(), b = want.to_vector();
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_LE(std::fabs(a[i] - b[i]), tol * std::max(1.0, std::fabs(b[i]))) << name << " element " << i;
}

// Checks the parameters and their gradients against module m (after its own
// backward), and that run_layer returned exactly `names` besides them.
void expect_params_and_names(const TensorMap& got, const Module& m, std::set<std::string> names,
                             double tol = 1e-12) {
  for (auto& [name, p] : m.named_parameters()) {
    expect_near(got, "param." + name, p, 0);
    expect_near(got, "grad.param." + name, p.grad(), tol);
    names.insert({"param." + name, "grad.param." + name});
  }
  std::set<std::string> returned;
  for (auto& [name, t] : got) returned.insert(name);
  EXPECT_EQ(returned, names);
}

// A nonzero tensor (so a comparison of gradients means something).
void expect_nonzero(const TensorMap& got, const std::string& name) {
  double worst = 0;
  for (double v : got.at(name).to_vector()) worst = std::max(worst, std::fabs(v));
  EXPECT_GT(worst, 0) << name << " is all zeros";
}

// After the library's own backward: run_layer's "out.<name>" equal `outputs`
// (int64 ones exactly), grad.x equals x's gradient, grad.prev_logits (when
// prev_logits is given) equals its gradient and is nonzero, the parameters
// and their gradients equal m's, and nothing else came back.
void expect_layer(const TensorMap& got, const Module& m, const std::vector<std::pair<std::string, Tensor>>& outputs,
                  const Tensor& x, const Tensor& prev_logits = Tensor(), double tol = 1e-12) {
  std::set<std::string> names{"grad.x"};
  for (auto& [name, t] : outputs) {
    expect_near(got, "out." + name, t, t.dtype() == DType::Int64 ? 0 : tol);
    names.insert("out." + name);
  }
  expect_near(got, "grad.x", x.grad(), tol);
  if (prev_logits.defined()) {
    expect_near(got, "grad.prev_logits", prev_logits.grad(), tol);
    expect_nonzero(got, "grad.prev_logits");
    names.insert("grad.prev_logits");
  }
  expect_params_and_names(got, m, names, tol);
}

// Assignments of a previous MoE layer: int64 [n, m] experts and [n, m] logits.
TensorMap previous(int64_t n, int64_t m, int64_t experts, uint64_t seed) {
  std::vector<int64_t> idx(n * m);
  for (int64_t i = 0; i < n * m; ++i) idx[i] = (i * 7 + seed) % experts;
  return {{"prev_indices", Tensor::from_indices(idx, {n, m})}, {"prev_logits", random({n, m}, seed + 1)}};
}

}  // namespace

TEST(RunLayer, LinearMatchesLibrary) {
  for (bool bias : {true, false}) {
    Generator g(1);
    Linear m(4, 3, bias, init(g));
    TensorMap in = with_params({{"x", random({2, 3, 4}, 2)}, {"grad_in.y", random({2, 3, 3}, 3)}}, m);
    TensorMap out = run_layer({{"layer", "linear"}, {"dtype", "float64"}, {"in_features", 4}, {"out_features", 3},
                               {"bias", bias}},
                              in);
    Tensor x = leaf_of(in["x"]);
    Tensor y = m.forward(x);
    y.backward(in["grad_in.y"]);
    expect_layer(out, m, {{"y", y}}, x);
  }
}

TEST(RunLayer, LayerNormMatchesLibrary) {
  Generator g(4);
  LayerNorm m(5, 1e-3, init(g));
  m.weight.copy_(random({5}, 5));
  m.bias.copy_(random({5}, 6));
  TensorMap in = with_params({{"x", random({3, 5}, 7)}, {"grad_in.y", random({3, 5}, 8)}}, m);
  TensorMap out = run_layer({{"layer", "layernorm"}, {"dtype", "float64"}, {"dim", 5}, {"eps", 1e-3}}, in);
  Tensor x = leaf_of(in["x"]);
  Tensor y = m.forward(x);
  y.backward(in["grad_in.y"]);
  expect_layer(out, m, {{"y", y}}, x);
}

TEST(RunLayer, AttentionMatchesLibrary) {
  for (bool causal : {false, true})
    for (bool elliptical : {false, true}) {
      SCOPED_TRACE(std::string(causal ? "causal" : "full") + (elliptical ? " elliptical" : ""));
      Generator g(9);
      MultiHeadAttention m(8, 2, causal, 0.0, init(g));
      m.elliptical = elliptical;
      TensorMap in{{"x", random({2, 3, 8}, 10)}, {"grad_in.y", random({2, 3, 8}, 11)},
                   {"grad_in.values", random({2, 2, 3, 4}, 12)}};
      if (elliptical) in["prev_values"] = random({2, 2, 3, 4}, 13);
      in = with_params(in, m);
      TensorMap out = run_layer({{"layer", elliptical ? "elliptical_attention" : "attention"},
                                 {"dtype", "float64"}, {"dim", 8}, {"heads", 2}, {"causal", causal}},
                                in);
      Tensor x = leaf_of(in["x"]);
      AttentionOutput o = m.forward(x, elliptical ? in["prev_values"] : Tensor());
      o.y.backward(in["grad_in.y"], true);
      o.values.backward(in["grad_in.values"]);
      expect_near(out, "out.y", o.y);
      expect_near(out, "out.values", o.values);
      expect_near(out, "grad.x", x.grad());
      std::set<std::string> names{"out.y", "out.values", "grad.x"};
      if (elliptical) {
        expect_near(out, "grad.prev_values", Tensor());  // the metric is detached
        names.insert("grad.prev_values");
      }
      expect_params_and_names(out, m, names);
    }
}

namespace {

const std::set<std::string> kRouterNames{"out.scores", "out.indices", "out.topk_logits", "out.logits",
                                         "out.balance_loss", "out.z_loss", "grad.x"};

// The router's outputs from run_layer against the library's r, after the
// library's backward with the same upstream gradients.
void backward_and_compare(const RouterOutput& r, const TensorMap& in, const TensorMap& out) {
  r.scores.backward(in.at("grad_in.scores"), true);
  r.logits.backward(in.at("grad_in.logits"), true);
  r.balance_loss.backward(in.at("grad_in.balance_loss"), true);
  r.z_loss.backward(in.at("grad_in.z_loss"));
  expect_near(out, "out.scores", r.scores);
  expect_near(out, "out.indices", r.indices, 0);
  expect_near(out, "out.topk_logits", r.topk_logits);
  expect_near(out, "out.logits", r.logits);
  expect_near(out, "out.balance_loss", r.balance_loss);
  expect_near(out, "out.z_loss", r.z_loss);
}

TensorMap router_inputs(int64_t n, int64_t d, int64_t e, int64_t k) {
  return {{"x", random({n, d}, 20)},
          {"grad_in.scores", random({n, k}, 21)},
          {"grad_in.logits", random({n, e}, 22)},
          {"grad_in.balance_loss", Tensor::scalar(0.7, DType::Float64)},
          {"grad_in.z_loss", Tensor::scalar(-0.3, DType::Float64)}};
}

}  // namespace

TEST(RunLayer, TopKRouterMatchesLibrary) {
  for (const char* gate : {"linear", "cosine"}) {
    SCOPED_TRACE(gate);
    RouterConfig rc{6, 4, 2, std::string(gate) == "linear" ? GateKind::Linear : GateKind::Cosine};
    Generator g(14);
    TopKRouter m(rc, init(g));
    TensorMap in = with_params(router_inputs(7, 6, 4, 2), m);
    TensorMap out = run_layer(
        {{"layer", "topk_router"}, {"dtype", "float64"}, {"dim", 6}, {"experts", 4}, {"k", 2}, {"gate", gate}}, in);
    Tensor x = leaf_of(in["x"]);
    backward_and_compare(m.forward(x), in, out);
    expect_near(out, "grad.x", x.grad());
    expect_params_and_names(out, m, kRouterNames);
  }
}

TEST(RunLayer, ACRouterMatchesLibraryInBothModes) {
  for (bool differentiable : {false, true}) {
    SCOPED_TRACE(differentiable ? "differentiable" : "detached");
    RouterConfig rc{6, 4, 2, GateKind::Linear};
    ACConfig ac{{ACStat::Variance, 1e-3, 5.0, ACScaling::Global}, 2, differentiable};
    Generator g(15);
    ACRouter m(rc, ac, init(g));
    TensorMap in = router_inputs(7, 6, 4, 2);
    in.merge(previous(7, 3, 4, 1));
    in["grad_in.ac_weights"] = random({4, 6}, 23);
    in = with_params(in, m);
    json config{{"layer", "ac_router"}, {"dtype", "float64"}, {"dim", 6}, {"experts", 4},
                {"ac",
                 {{"stat", "variance"}, {"eps", 1e-3}, {"clip", 5}, {"scaling", "global"}, {"mix", 2},
                  {"differentiable", differentiable}}}};
    TensorMap out = run_layer(config, in);
    Tensor x = leaf_of(in["x"]), prev_logits = leaf_of(in["prev_logits"]);
    RouterOutput r = m.forward(x, {in["prev_indices"], prev_logits});
    if (differentiable) r.ac_weights.backward(in["grad_in.ac_weights"], true);
    backward_and_compare(r, in, out);
    expect_near(out, "out.ac_weights", r.ac_weights);
    expect_near(out, "grad.x", x.grad());
    expect_near(out, "grad.prev_logits", prev_logits.grad());
    if (differentiable) expect_nonzero(out, "grad.prev_logits");
    std::set<std::string> names = kRouterNames;
    names.insert({"out.ac_weights", "grad.prev_logits"});
    expect_params_and_names(out, m, names);
  }
}

TEST(RunLayer, MoEMatchesLibraryTopKAndAC) {
  for (bool use_ac : {false, true}) {
    SCOPED_TRACE(use_ac ? "AC" : "top-k");
    MoEConfig mc;
    mc.dim = 6, mc.hidden = 5, mc.experts = 4, mc.k = 2, mc.capacity_factor = use_ac ? 0.0 : 0.75;
    mc.use_ac = use_ac, mc.scale_expert_input = use_ac;
    mc.ac.mix_m = 2, mc.ac.differentiable = true;
    Generator g(16);
    MoELayer m(mc, init(g));
    TensorMap in{{"x", random({8, 6}, 24)}, {"grad_in.y", random({8, 6}, 25)}};
    if (use_ac) in.merge(previous(8, 2, 4, 2));
    in = with_params(in, m);
    json config{{"layer", "moe"}, {"dtype", "float64"}, {"dim", 6}, {"hidden", 5}, {"experts", 4}, {"k", 2}};
    if (use_ac)
      config.update({{"use_ac", true}, {"scale_expert_input", true}, {"ac", {{"mix", 2}, {"differentiable", true}}}});
    else
      config["capacity_factor"] = 0.75;
    TensorMap out = run_layer(config, in);
    Tensor x = leaf_of(in["x"]), prev_logits = use_ac ? leaf_of(in["prev_logits"]) : Tensor();
    MoEOutput o = m.forward(x, use_ac ? Assignments{in["prev_indices"], prev_logits} : Assignments{});
    if (!use_ac) {
      EXPECT_GT(m.last_stats.dropped, 0);  // the capacity really drops slots
    }
    o.y.backward(in["grad_in.y"]);
    expect_layer(out, m,
                 {{"y", o.y}, {"balance_loss", o.balance_loss}, {"z_loss", o.z_loss},
                  {"indices", o.assignments.indices}, {"topk_logits", o.assignments.logits}},
                 x, prev_logits);
  }
}

TEST(RunLayer, SoftMoEMatchesLibraryWithAndWithoutAC) {
  for (bool use_ac : {false, true}) {
    SCOPED_TRACE(use_ac ? "AC" : "plain");
    SoftMoEConfig sc;
    sc.dim = 6, sc.hidden = 5, sc.experts = 2, sc.slots = 2, sc.mix_k = 2;
    sc.use_ac = use_ac, sc.differentiable = true;
    Generator g(17);
    SoftMoE m(sc, init(g));
    TensorMap in{{"x", random({2, 3, 6}, 26)}, {"grad_in.y", random({2, 3, 6}, 27)}};
    if (use_ac) in.merge(previous(6, 3, 2, 3));
    in = with_params(in, m);
    json config{{"layer", "soft_moe"}, {"dtype", "float64"}, {"dim", 6}, {"hidden", 5},
                {"experts", 2}, {"slots", 2}, {"mix_k", 2}};
    if (use_ac) config.update({{"use_ac", true}, {"ac", {{"differentiable", true}}}});
    TensorMap out = run_layer(config, in);
    Tensor x = leaf_of(in["x"]), prev_logits = use_ac ? leaf_of(in["prev_logits"]) : Tensor();
    SoftMoEOutput o = m.forward(x, use_ac ? Assignments{in["prev_indices"], prev_logits} : Assignments{});
    o.y.backward(in["grad_in.y"]);
    expect_layer(out, m,
                 {{"y", o.y}, {"dispatch", o.dispatch}, {"combine", o.combine}, {"indices", o.assignments.indices},
                  {"topk_logits", o.assignments.logits}},
                 x, prev_logits);
  }
}

TEST(RunLayer, Float32MatchesLibrary) {
  MoEConfig mc;
  mc.dim = 6, mc.hidden = 5, mc.experts = 3, mc.k = 1;
  Generator g(18);
  MoELayer m(mc, init(g, DType::Float32));
  TensorMap in = with_params(
      {{"x", random({5, 6}, 28, DType::Float32)}, {"grad_in.y", random({5, 6}, 29, DType::Float32)}}, m);
  TensorMap out = run_layer(
      {{"layer", "moe"}, {"dtype", "float32"}, {"dim", 6}, {"hidden", 5}, {"experts", 3}, {"k", 1}}, in);
  Tensor x = leaf_of(in["x"]);
  MoEOutput o = m.forward(x);
  o.y.backward(in["grad_in.y"]);
  expect_layer(out, m,
               {{"y", o.y}, {"balance_loss", o.balance_loss}, {"z_loss", o.z_loss},
                {"indices", o.assignments.indices}, {"topk_logits", o.assignments.logits}},
               x, Tensor(), 1e-6);
}

TEST(RunLayer, InitSeedInitialisesOnlyMissingParameters) {
  Tensor weight = random({3, 4}, 30);
  TensorMap out = run_layer(
      {{"layer", "linear"}, {"dtype", "float64"}, {"in_features", 4}, {"out_features", 3}, {"init_seed", 5}},
      {{"x", random({2, 4}, 31)}, {"grad_in.y", random({2, 3}, 32)}, {"param.weight", weight}});
  Generator g(5);
  Linear seeded(4, 3, true, init(g));
  expect_near(out, "param.weight", weight, 0);
  expect_near(out, "param.bias", seeded.bias, 0);
}

TEST(RunLayer, RoundTripThroughSafetensorsFiles) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("moegrad_run_layer_" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(dir);
  Generator g(19);
  TopKRouter m(RouterConfig{6, 4, 2, GateKind::Linear}, init(g));
  const TensorMap in = with_params(router_inputs(5, 6, 4, 2), m);
  const json config{{"layer", "topk_router"}, {"dtype", "float64"}, {"dim", 6}, {"experts", 4}};
  save_safetensors(dir + "/in.safetensors", in);
  save_safetensors(dir + "/out.safetensors", run_layer(config, load_safetensors(dir + "/in.safetensors").tensors));
  const TensorMap back = load_safetensors(dir + "/out.safetensors").tensors, direct = run_layer(config, in);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(back.size(), direct.size());
  for (auto& [name, t] : direct) expect_near(back, name, t, 0);
  EXPECT_EQ(back.at("out.balance_loss").shape(), Shape{});  // scalars stay 0-d
  EXPECT_EQ(back.at("out.indices").dtype(), DType::Int64);
}

namespace {

// A valid AC MoE run, the base that the error tests spoil one thing at a time.
struct Case {
  json config;
  TensorMap in;
};

Case ac_moe_case() {
  MoEConfig mc;
  mc.dim = 4, mc.hidden = 3, mc.experts = 3, mc.k = 2, mc.use_ac = true, mc.ac.mix_m = 2;
  Generator g(20);
  MoELayer m(mc, init(g));
  TensorMap in{{"x", random({5, 4}, 33)}, {"grad_in.y", random({5, 4}, 34)}};
  in.merge(previous(5, 2, 3, 4));
  return {{{"layer", "moe"}, {"dtype", "float64"}, {"dim", 4}, {"hidden", 3}, {"experts", 3}, {"k", 2},
           {"use_ac", true}, {"ac", {{"mix", 2}}}},
          with_params(in, m)};
}

}  // namespace

// The config as examples/run_layer reads it. A value nested a million levels
// deep crashed run_layer: its error message printed the value, and printing
// recursed once per level until the stack overflowed.
TEST(RunLayer, ParseConfig) {
  EXPECT_EQ(parse_config("{\"layer\": \"linear\", \"ac\": {\"mix\": [1]}}", "c.json"),
            json({{"layer", "linear"}, {"ac", {{"mix", {1}}}}}));
  EXPECT_MG_ERROR(parse_config("{\"layer\": ", "c.json"), "run_layer: config 'c.json' is not valid JSON");
  const size_t depth = 1000000;
  const std::string deep = "{\"layer\": \"linear\", \"in_features\": " + std::string(depth, '[') +
                           std::string(depth, ']') + "}";
  EXPECT_MG_ERROR(run_layer(parse_config(deep, "c.json"), {}),
                  "run_layer: config 'c.json' nests deeper than 16 levels");
}

// Sizes of 2^62 overflowed int64 where the library multiplies them (an
// expert stack [experts, dim, hidden]), and a capacity factor of 1e300
// overflowed the capacity it converts to int64.
TEST(RunLayer, SizesAndCapacityFactorAreBounded) {
  const Case base = ac_moe_case();
  for (const char* key : {"hidden", "experts"}) {
    json config = base.config;
    config[key] = int64_t(1) << 62;
    EXPECT_MG_ERROR(run_layer(config, base.in), detail::cat("config key \"", key, "\" must be in [1, 1048576]"));
  }
  json config = base.config;
  config["capacity_factor"] = 1e300;
  EXPECT_MG_ERROR(run_layer(config, base.in), "config key \"capacity_factor\" must be in [0, ");
}

TEST(RunLayer, BadConfigsNameTheKey) {
  const Case base = ac_moe_case();
  ASSERT_NO_THROW(run_layer(base.config, base.in));
  struct Bad {
    std::function<void(json&)> spoil;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {[](json& c) { c = json::array({1}); }, "the config must be a JSON object"},
      {[](json& c) { c.erase("layer"); }, "config key \"layer\" must be one of \"linear\""},
      {[](json& c) { c["layer"] = "lineer"; }, "got \"lineer\""},
      {[](json& c) { c["layer"] = 3; }, "config key \"layer\" must be one of"},
      {[](json& c) { c["dimm"] = 4; }, "config key \"dimm\" is unknown or unused for layer \"moe\""},
      {[](json& c) { c.erase("dim"); }, "missing config key \"dim\" (required by layer \"moe\")"},
      {[](json& c) { c["dim"] = "4"; }, "config key \"dim\" must be an integer, got \"4\""},
      {[](json& c) { c["dim"] = 4.5; }, "config key \"dim\" must be an integer"},
      {[](json& c) { c["hidden"] = 0; }, "config key \"hidden\" must be in [1, 1048576], got 0"},
      {[](json& c) { c["k"] = 4; }, "config key \"k\" must be in [1, 3], got 4"},
      {[](json& c) { c["gate"] = "relu"; }, "config key \"gate\" must be one of \"linear\", \"cosine\""},
      {[](json& c) { c["dtype"] = "float16"; }, "config key \"dtype\" must be one of \"float32\", \"float64\""},
      {[](json& c) { c["use_ac"] = 1; }, "config key \"use_ac\" must be true or false"},
      {[](json& c) { c["capacity_factor"] = -1; }, "config key \"capacity_factor\" must be in [0, 3]"},
      {[](json& c) { c["init_seed"] = -1; }, "config key \"init_seed\" must be at least 0"},
      {[](json& c) { c["ac"] = 3; }, "config key \"ac\" must be a JSON object"},
      {[](json& c) { c["ac"]["stat"] = "median"; }, "config key \"ac.stat\" must be one of \"mad\", \"variance\""},
      {[](json& c) { c["ac"]["scaling"] = 1; }, "config key \"ac.scaling\""},
      {[](json& c) { c["ac"]["eps"] = 0; }, "config key \"ac.eps\" must be positive"},
      {[](json& c) { c["ac"]["clip"] = "10"; }, "config key \"ac.clip\" must be a number"},
      {[](json& c) { c["ac"]["mix"] = 4; }, "config key \"ac.mix\" must be in [1, 3]"},
      {[](json& c) { c["ac"]["differentiable"] = "yes"; }, "config key \"ac.differentiable\" must be true or false"},
      {[](json& c) { c["ac"]["mix_m"] = 2; }, "config key \"ac.mix_m\" is unknown or unused"},
      {[](json& c) { c["use_ac"] = false; }, "config key \"ac\" is unknown or unused for layer \"moe\""},
  };
  for (const Bad& b : bad) {
    json c = base.config;
    b.spoil(c);
    SCOPED_TRACE(c.dump());
    EXPECT_MG_ERROR(run_layer(c, base.in), b.message);
  }
  // keys of the other layers
  const TensorMap x{{"x", random({2, 3, 8}, 35)}, {"grad_in.y", random({2, 3, 8}, 36)}};
  EXPECT_MG_ERROR(run_layer({{"layer", "attention"}, {"dim", 8}, {"heads", 3}, {"init_seed", 1}}, x),
                  "config key \"heads\" must be a divisor of dim=8, got 3");
  EXPECT_MG_ERROR(run_layer({{"layer", "layernorm"}, {"dim", 8}, {"eps", -1}, {"init_seed", 1}}, x),
                  "config key \"eps\" must be positive");
  EXPECT_MG_ERROR(run_layer({{"layer", "linear"}, {"in_features", 8}, {"init_seed", 1}}, x),
                  "missing config key \"out_features\"");
  EXPECT_MG_ERROR(run_layer({{"layer", "soft_moe"}, {"dim", 8}, {"hidden", 2}, {"experts", 2}, {"use_ac", true},
                             {"ac", {{"mix", 2}}}, {"init_seed", 1}},
                            x),
                  "config key \"ac.mix\" is unknown or unused for layer \"soft_moe\"");
  EXPECT_MG_ERROR(run_layer({{"layer", "topk_router"}, {"dim", 8}, {"experts", 2}, {"capacity_factor", 1}}, x),
                  "config key \"capacity_factor\" is unknown or unused for layer \"topk_router\"");
}

TEST(RunLayer, BadInputsNameTheTensor) {
  const Case base = ac_moe_case();
  struct Bad {
    std::function<void(TensorMap&)> spoil;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {[](TensorMap& in) { in.erase("x"); }, "missing input tensor \"x\""},
      {[](TensorMap& in) { in["x"] = in["x"].to(DType::Float32); },
       "tensor \"x\" must be float64 (the config's \"dtype\"), got float32"},
      {[](TensorMap& in) { in["x"] = random({5, 3}, 1); }, "tensor \"x\" must have shape [n, 4] with n >= 1, got [5, 3]"},
      {[](TensorMap& in) { in["x"] = random({0, 4}, 1); }, "tensor \"x\" must have shape"},
      {[](TensorMap& in) { in.erase("param.router.weight"); },
       "missing input tensor \"param.router.weight\" (give every parameter, or set \"init_seed\""},
      {[](TensorMap& in) { in["param.experts.w1"] = random({3, 4, 3}, 1); },
       "tensor \"param.experts.w1\" must have shape [3, 3, 4], got [3, 4, 3]"},
      {[](TensorMap& in) { in["param.experts.b2"] = in["param.experts.b2"].to(DType::Float32); },
       "tensor \"param.experts.b2\" must be float64"},
      {[](TensorMap& in) { in["param.experts.w3"] = random({2}, 1); }, "unexpected input tensor \"param.experts.w3\""},
      {[](TensorMap& in) { in["y"] = random({2}, 1); }, "unexpected input tensor \"y\""},
      {[](TensorMap& in) { in["grad_in.indices"] = Tensor::from_indices({0}, {1}); },
       "unexpected input tensor \"grad_in.indices\""},
      {[](TensorMap& in) { in.erase("grad_in.y"); }, "missing input tensor \"grad_in.y\""},
      {[](TensorMap& in) { in["grad_in.y"] = random({4, 5}, 1); },
       "tensor \"grad_in.y\" must have shape [5, 4] like out.y, got [4, 5]"},
      {[](TensorMap& in) { in["grad_in.balance_loss"] = random({1}, 1); },
       "tensor \"grad_in.balance_loss\" must have shape [] like out.balance_loss, got [1]"},
      {[](TensorMap& in) { in.erase("prev_indices"); }, "missing input tensor \"prev_indices\""},
      {[](TensorMap& in) { in["prev_indices"] = in["prev_indices"].to(DType::Float64); },
       "tensor \"prev_indices\" must be int64, got float64"},
      {[](TensorMap& in) { in["prev_indices"] = Tensor::from_indices({0, 1, 2, 0, 3, 1, 0, 0, 1, 1}, {5, 2}); },
       "tensor \"prev_indices\" holds expert 3, outside [0, 3)"},
      {[](TensorMap& in) { in["prev_indices"] = Tensor::from_indices({0, 1, 2, 0, 1}, {5, 1}); },
       "tensor \"prev_indices\" must have shape [5, m] with m >= 2, got [5, 1]"},
      {[](TensorMap& in) { in.erase("prev_logits"); }, "missing input tensor \"prev_logits\""},
      {[](TensorMap& in) { in["prev_logits"] = random({5, 3}, 1); },
       "tensor \"prev_logits\" must have shape [5, 2] like prev_indices, got [5, 3]"},
  };
  for (const Bad& b : bad) {
    TensorMap in = base.in;
    b.spoil(in);
    EXPECT_MG_ERROR(run_layer(base.config, in), b.message);
  }
  const json ell{{"layer", "elliptical_attention"}, {"dim", 8}, {"heads", 2}, {"dtype", "float64"}, {"init_seed", 1}};
  TensorMap in{{"x", random({2, 3, 8}, 37)}, {"grad_in.y", random({2, 3, 8}, 38)}};
  EXPECT_MG_ERROR(run_layer(ell, in), "missing input tensor \"prev_values\"");
  in["prev_values"] = random({2, 3, 2, 4}, 39);
  EXPECT_MG_ERROR(run_layer(ell, in), "tensor \"prev_values\" must have shape [2, 2, 3, 4] ([B, heads, T, dim / heads])");
}
