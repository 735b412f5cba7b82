// Module checkpoints: names follow the module tree, a save/load round trip
// through a file restores every parameter in place, float64 loads into float32,
// and missing, unexpected, mis-shaped or non-float tensors give an Error that
// names the parameter and leaves the module unchanged.
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "nn/checkpoint.h"
#include "test_helpers.h"

using namespace moegrad;

namespace {

// weight [out, in] and bias [out].
struct Leaf : Module {
  Tensor weight, bias;
  Leaf(int64_t in, int64_t out, const InitOptions& opt) {
    weight = register_parameter("weight", Tensor::randn({out, in}, 0, 1, opt.dtype, &opt.generator()));
    bias = register_parameter("bias", Tensor::randn({out}, 0, 1, opt.dtype, &opt.generator()));
  }
};

struct Block : Module {
  Tensor gain;
  std::shared_ptr<Leaf> ffn;
  explicit Block(const InitOptions& opt) {
    gain = register_parameter("gain", Tensor::randn({4}, 0, 1, opt.dtype, &opt.generator()));
    ffn = register_module("ffn", std::make_shared<Leaf>(4, 3, opt));
  }
};

// Children named "0", "1" give "blocks.0.ffn.weight", as in a transformer.
struct Stack : Module {
  Stack(int n, const InitOptions& opt) {
    for (int i = 0; i < n; ++i) register_module(std::to_string(i), std::make_shared<Block>(opt));
  }
};

struct Net : Module {
  Tensor embed;
  std::shared_ptr<Stack> blocks;
  explicit Net(uint64_t seed, DType dtype = DType::Float64) {
    Generator gen(seed);
    const InitOptions opt{dtype, &gen};
    embed = register_parameter("embed", Tensor::randn({5, 4}, 0, 1, dtype, &gen));
    blocks = register_module("blocks", std::make_shared<Stack>(2, opt));
  }
};

std::map<std::string, std::vector<double>> snapshot(const Module& m) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& [name, p] : m.named_parameters()) out[name] = p.to_vector();
  return out;
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "moegrad_ckpt_" + std::to_string(::getpid()) + "_" + name + ".safetensors";
}

// The registry's own checks: names without dots, each registered once, no null child or generator.
struct Registry : Module {
  using Module::register_generator;
  using Module::register_module;
  using Module::register_parameter;
};

TEST(Module, RegistrationErrors) {
  Registry m;
  m.register_parameter("w", Tensor::zeros({2}));
  EXPECT_MG_ERROR(m.register_parameter("w", Tensor::zeros({2})), "Module::register_parameter: 'w' registered twice");
  EXPECT_MG_ERROR(m.register_parameter("a.b", Tensor::zeros({2})), "Module::register_parameter: invalid name 'a.b'");
  EXPECT_MG_ERROR(m.register_parameter("", Tensor::zeros({2})), "invalid name ''");
  m.register_module("child", std::make_shared<Registry>());
  EXPECT_MG_ERROR(m.register_module("child", std::make_shared<Registry>()), "Module::register_module: 'child' registered twice");
  EXPECT_MG_ERROR(m.register_module("none", std::shared_ptr<Registry>()), "Module::register_module: 'none' is null");
  EXPECT_MG_ERROR(m.register_module("x.y", std::make_shared<Registry>()), "Module::register_module: invalid name 'x.y'");
  Generator g(1);
  m.register_generator("g", &g);
  EXPECT_MG_ERROR(m.register_generator("g", &g), "Module::register_generator: 'g' registered twice");
  EXPECT_MG_ERROR(m.register_generator("h", nullptr), "Module::register_generator: 'h' is null");
  EXPECT_MG_ERROR(m.register_generator("h.i", &g), "Module::register_generator: invalid name 'h.i'");
  EXPECT_EQ(m.named_parameters().size(), 1u);
  EXPECT_EQ(m.named_generators().size(), 1u);
}

TEST(Checkpoint, NamesFollowTheModuleTree) {
  Net net(1);
  const TensorMap state = module_state(net);
  std::vector<std::string> names;
  for (const auto& [name, t] : state) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"blocks.0.ffn.bias", "blocks.0.ffn.weight", "blocks.0.gain",
                                             "blocks.1.ffn.bias", "blocks.1.ffn.weight", "blocks.1.gain", "embed"}));
  EXPECT_TRUE(state.at("embed").same(net.embed));
  EXPECT_EQ(state.at("blocks.1.ffn.weight").shape(), (Shape{3, 4}));
}

TEST(Checkpoint, RoundTripThroughFile) {
  Net a(1), b(2);
  ASSERT_NE(snapshot(a), snapshot(b));
  const Tensor b_embed = b.embed;
  const std::string path = temp_path("roundtrip");
  save_module(path, a, {{"step", "3"}});
  load_module(path, b);
  EXPECT_EQ(snapshot(b), snapshot(a));
  // In place: the parameter handles are the same tensors, still trainable.
  EXPECT_TRUE(b.embed.same(b_embed));
  EXPECT_TRUE(b.embed.requires_grad());
  EXPECT_EQ(load_safetensors(path).metadata.at("step"), "3");
  std::remove(path.c_str());
}

TEST(Checkpoint, LoadsFloat64IntoFloat32) {
  Net a(1, DType::Float64), b(2, DType::Float32);
  load_module_state(b, module_state(a));
  for (const auto& [name, p] : b.named_parameters()) {
    EXPECT_EQ(p.dtype(), DType::Float32) << name;
    const std::vector<double> want = module_state(a).at(name).to_vector(), got = p.to_vector();
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], static_cast<double>(static_cast<float>(want[i])));
  }
}

TEST(Checkpoint, MissingParameter) {
  Net a(1), b(2);
  TensorMap state = module_state(a);
  state.erase("blocks.1.ffn.bias");
  const auto before = snapshot(b);
  EXPECT_MG_ERROR(load_module_state(b, state), "load_module_state: parameter 'blocks.1.ffn.bias' is missing");
  EXPECT_EQ(snapshot(b), before);
  load_module_state(b, state, /*allow_missing=*/true);
  auto after = snapshot(b), want = snapshot(a);
  EXPECT_EQ(after.at("blocks.1.ffn.bias"), before.at("blocks.1.ffn.bias"));
  after.erase("blocks.1.ffn.bias"), want.erase("blocks.1.ffn.bias");
  EXPECT_EQ(after, want);
}

TEST(Checkpoint, UnexpectedName) {
  Net a(1), b(2);
  TensorMap state = module_state(a);
  state["blocks.2.gain"] = Tensor::zeros({4}, DType::Float64);
  const auto before = snapshot(b);
  EXPECT_MG_ERROR(load_module_state(b, state), "the checkpoint has 'blocks.2.gain', which is no parameter");
  EXPECT_EQ(snapshot(b), before);
  load_module_state(b, state, false, /*allow_unexpected=*/true);
  EXPECT_EQ(snapshot(b), snapshot(a));
}

TEST(Checkpoint, ShapeMismatchNamesParameterAndShapes) {
  Net a(1), b(2);
  TensorMap state = module_state(a);
  state["blocks.0.ffn.weight"] = Tensor::zeros({4, 3}, DType::Float64);
  const auto before = snapshot(b);
  EXPECT_MG_ERROR(load_module_state(b, state),
                  "parameter 'blocks.0.ffn.weight' has shape [3, 4], the checkpoint has [4, 3]");
  EXPECT_EQ(snapshot(b), before);
  EXPECT_MG_ERROR(load_module_state(b, state, true, true), "has shape [3, 4]");
}

TEST(Checkpoint, RejectsNonFloatAndUndefinedTensors) {
  Net a(1), b(2);
  TensorMap state = module_state(a);
  state["embed"] = Tensor::zeros({5, 4}, DType::Int64);
  EXPECT_MG_ERROR(load_module_state(b, state), "parameter 'embed' is float64, the checkpoint has int64");
  state["embed"] = Tensor();
  EXPECT_MG_ERROR(load_module_state(b, state), "tensor 'embed' is undefined");
}

TEST(Checkpoint, LoadModuleNamesTheFile) {
  Net a(1);
  Leaf other(2, 2, InitOptions{DType::Float64, nullptr});
  const std::string path = temp_path("names_file");
  save_module(path, other);
  EXPECT_MG_ERROR(load_module(path, a), "load_module: '" + path + "': load_module_state: parameter 'blocks.0.ffn.bias'");
  std::remove(path.c_str());
  EXPECT_MG_ERROR(load_module(path, a), "load_safetensors: '" + path + "': cannot open");
}

}  // namespace
