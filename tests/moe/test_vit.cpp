// The Vision Transformer (moe/vit.h): output shapes for MNIST-size input,
// float64 gradchecks of a tiny ViT (8x8 images, patch 4, dim 4, 2 heads) with
// top-k MoE and with Soft MoE layers, each plain ("sgsg") and with AC
// ("sgsc"), float32 against float64, a checkpoint round trip, and errors.
//
// AC in the paper's detached mode treats W (and the mixing weights) as
// constants, while finite differences see W move with the AC layer's input.
// So the detached models are gradchecked only in the parameters that do not
// feed that input (the AC layer's router and experts, the final norm, the
// head); the differentiable mode, whose forward is the same, is gradchecked
// in the image and every parameter.
#include "moe/vit.h"
#include "nn/checkpoint.h"
#include "test_helpers.h"

using namespace moegrad;

namespace {

ViTConfig tiny(bool soft, const std::string& arch, bool differentiable = false) {
  ViTConfig c;
  c.image_size = 8, c.patch = 4, c.arch = arch;
  c.block.dim = 4, c.block.heads = 2, c.block.soft_moe = soft;
  c.block.moe.hidden = 4, c.block.moe.experts = 3, c.block.moe.k = 2;
  c.block.moe.ac.differentiable = differentiable;
  c.block.soft.hidden = 4, c.block.soft.experts = 2, c.block.soft.slots = 2;
  c.block.soft.differentiable = differentiable;
  return c;
}

std::shared_ptr<ViT> make(const ViTConfig& c, uint64_t seed, DType dtype = DType::Float64) {
  Generator gen(seed);
  return std::make_shared<ViT>(c, InitOptions{dtype, &gen});
}

// logits and balance loss in one vector, so the gradcheck covers both.
Tensor outputs(ViT& vit, const Tensor& images) {
  ViTOutput o = vit.forward(images);
  return concat({reshape(o.logits, {-1}), reshape(o.balance_loss, {1})}, 0);
}

Tensor image_leaf(int64_t batch, int64_t size, uint64_t seed) {
  return moegrad::testing::leaf({batch, 1, size, size}, seed, 0.0, 1.0);
}

// The image (when checked) followed by the parameters whose names start with one of `prefixes` (all when empty).
std::vector<Tensor> checked_inputs(const ViT& vit, const Tensor& image, const std::vector<std::string>& prefixes = {}) {
  std::vector<Tensor> in{image};
  for (auto& [name, p] : vit.named_parameters()) {
    bool take = prefixes.empty();
    for (const std::string& pre : prefixes) take = take || name.rfind(pre, 0) == 0;
    if (take) in.push_back(p);
  }
  return in;
}

void expect_gradcheck(const std::shared_ptr<ViT>& vit, const std::vector<Tensor>& in) {
  EXPECT_GRADCHECK([vit](const std::vector<Tensor>& v) { return outputs(*vit, v[0]); }, in);
}

}  // namespace

TEST(ViT, ForwardShapesMnistSize) {
  for (bool soft : {false, true}) {
    SCOPED_TRACE(soft ? "soft" : "top-k");
    ViTConfig c = tiny(soft, "sgsc");
    c.image_size = 28, c.block.dim = 16;
    auto vit = make(c, 1, DType::Float32);
    EXPECT_EQ(vit->positions->weight.shape(), (Shape{50, 16}));  // 7x7 patches and the class token
    EXPECT_EQ(vit->patch_embed->weight.shape(), (Shape{16, 16}));
    Tensor images = Tensor::rand({3, 1, 28, 28});
    ViTOutput o = vit->forward(images);
    EXPECT_EQ(o.logits.shape(), (Shape{3, 10}));
    EXPECT_EQ(o.logits.dtype(), DType::Float32);
    EXPECT_EQ(o.balance_loss.numel(), 1);
    if (soft) EXPECT_EQ(o.balance_loss.item(), 0.0);
    else EXPECT_GT(o.balance_loss.item(), 0.0);  // two top-k layers (g and c)
    auto stats = vit->routing_stats();
    ASSERT_EQ(stats.size(), 2u);
    EXPECT_EQ(stats[0].first, 1);
    EXPECT_EQ(stats[1].first, 3);
    int64_t routed = 0;
    for (int64_t n : stats[1].second.tokens_per_expert) routed += n;
    EXPECT_EQ(routed, soft ? 3 * 50 : 3 * 50 * 2);  // soft: each token's top slot; top-k: k slots per token
    EXPECT_GT(stats[1].second.ac_max, 0.0);          // the AC layer's weights
  }
  ViTConfig rgb = tiny(false, "sg");
  rgb.channels = 3, rgb.classes = 5;
  EXPECT_EQ(make(rgb, 2, DType::Float32)->forward(Tensor::rand({2, 3, 8, 8})).logits.shape(), (Shape{2, 5}));
}

TEST(ViT, GradcheckTopKPlain) {
  auto vit = make(tiny(false, "sgsg"), 3);
  expect_gradcheck(vit, checked_inputs(*vit, image_leaf(2, 8, 4)));
}

TEST(ViT, GradcheckTopKACDetachedParameters) {
  auto vit = make(tiny(false, "sgsc"), 5);
  Tensor image = image_leaf(2, 8, 6);
  image.requires_grad_(false);  // W depends on it without a gradient
  expect_gradcheck(vit, checked_inputs(*vit, image, {"layers.3.moe.", "final_norm.", "head."}));
}

TEST(ViT, GradcheckTopKACDifferentiable) {
  auto vit = make(tiny(false, "sgsc", true), 7);
  expect_gradcheck(vit, checked_inputs(*vit, image_leaf(2, 8, 8)));
}

TEST(ViT, GradcheckSoftPlainAndAC) {
  auto plain = make(tiny(true, "sgsg"), 9);
  expect_gradcheck(plain, checked_inputs(*plain, image_leaf(2, 8, 10)));

  auto detached = make(tiny(true, "sgsc"), 11);
  Tensor image = image_leaf(2, 8, 12);
  image.requires_grad_(false);
  expect_gradcheck(detached, checked_inputs(*detached, image, {"layers.3.moe.", "final_norm.", "head."}));

  auto differentiable = make(tiny(true, "sgsc", true), 13);
  expect_gradcheck(differentiable, checked_inputs(*differentiable, image_leaf(2, 8, 14)));
}

// The detached and differentiable AC modes compute the same forward; only the gradient differs.
TEST(ViT, ACModesShareTheForward) {
  for (bool soft : {false, true}) {
    auto detached = make(tiny(soft, "sgsc"), 15), differentiable = make(tiny(soft, "sgsc", true), 15);
    Tensor images = Tensor::rand({3, 1, 8, 8}, 0, 1, DType::Float64);
    EXPECT_EQ(detached->forward(images).logits.to_vector(), differentiable->forward(images).logits.to_vector());
  }
}

TEST(ViT, Float32AgreesWithFloat64) {
  for (bool soft : {false, true}) {
    SCOPED_TRACE(soft ? "soft" : "top-k");
    auto v64 = make(tiny(soft, "sgsc"), 16), v32 = make(tiny(soft, "sgsc"), 17, DType::Float32);
    load_module_state(*v32, module_state(*v64));  // converts to float32
    Tensor images = Tensor::rand({3, 1, 8, 8}, 0, 1, DType::Float64);
    std::vector<double> a = v64->forward(images).logits.to_vector();
    std::vector<double> b = v32->forward(images.to(DType::Float32)).logits.to_vector();
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4) << "logit " << i;
  }
}

TEST(ViT, CheckpointRoundTrip) {
  const std::string path = ::testing::TempDir() + "/moegrad_test_vit.safetensors";
  auto saved = make(tiny(true, "sgsc"), 18, DType::Float32), loaded = make(tiny(true, "sgsc"), 19, DType::Float32);
  Tensor images = Tensor::rand({2, 1, 8, 8});
  save_module(path, *saved);
  EXPECT_NE(saved->forward(images).logits.to_vector(), loaded->forward(images).logits.to_vector());
  load_module(path, *loaded);
  EXPECT_EQ(saved->forward(images).logits.to_vector(), loaded->forward(images).logits.to_vector());
  auto other = make(tiny(false, "sgsc"), 20, DType::Float32);  // top-k layers: other parameter names
  EXPECT_THROW(load_module(path, *other), Error);
  std::remove(path.c_str());
}

TEST(ViT, Errors) {
  auto vit = make(tiny(false, "sgsg"), 21, DType::Float32);
  EXPECT_MG_ERROR(vit->forward(Tensor::rand({2, 8, 8})), "ViT: expected images [B, 1, 8, 8], got [2, 8, 8]");
  EXPECT_MG_ERROR(vit->forward(Tensor::rand({2, 3, 8, 8})), "ViT: expected images [B, 1, 8, 8], got [2, 3, 8, 8]");
  EXPECT_MG_ERROR(vit->forward(Tensor::rand({2, 1, 8, 12})), "got [2, 1, 8, 12]");
  EXPECT_MG_ERROR(vit->forward(Tensor()), "ViT: expected images [B, 1, 8, 8], got undefined");
  ViTConfig c = tiny(false, "sgsg");
  c.patch = 3;
  EXPECT_MG_ERROR(ViT{c}, "ViT: image_size 8 must be a positive multiple of patch 3");
  c.patch = 0;
  EXPECT_MG_ERROR(ViT{c}, "ViT: image_size 8 must be a positive multiple of patch 0");
  c = tiny(false, "scsg");
  EXPECT_MG_ERROR(ViT{c}, "has no earlier MoE layer");
  c = tiny(false, "sxsg");
  EXPECT_MG_ERROR(ViT{c}, "unknown layer 'x'");
  c = tiny(false, "sg");
  c.classes = 0;
  EXPECT_MG_ERROR(ViT{c}, "ViT: channels and classes must be positive");
}
