// Vision Transformer (see vit.h).
#include "moe/vit.h"

namespace moegrad {

ViT::ViT(const ViTConfig& c, const InitOptions& opt) : config(c) {
  check_architecture(c.arch);
  MG_CHECK(c.patch > 0 && c.image_size > 0 && c.image_size % c.patch == 0, "ViT: image_size ", c.image_size,
           " must be a positive multiple of patch ", c.patch);
  MG_CHECK(c.channels > 0 && c.classes > 0, "ViT: channels and classes must be positive");
  config.block.causal = false;
  const int64_t d = c.block.dim, grid = c.image_size / c.patch;
  patch_embed = register_module("patch_embed", std::make_shared<Linear>(c.channels * c.patch * c.patch, d, true, opt));
  class_token = register_parameter("class_token", init_normal({1, 1, d}, 0.02, opt));
  positions = register_module("positions", std::make_shared<PositionalEmbedding>(grid * grid + 1, d, 0.02, opt));
  auto list = register_module("layers", std::make_shared<ModuleList>());
  for (char kind : c.arch) layers.push_back(list->append(std::make_shared<Sublayer>(kind, config.block, opt)));
  final_norm = register_module("final_norm", std::make_shared<LayerNorm>(d, 1e-5, opt));
  head = register_module("head", std::make_shared<Linear>(d, c.classes, true, opt));
}

ViTOutput ViT::forward(const Tensor& images) {
  const int64_t C = config.channels, S = config.image_size, P = config.patch, G = S / P;
  MG_CHECK(images.defined() && images.dim() == 4 && images.size(1) == C && images.size(2) == S && images.size(3) == S,
           "ViT: expected images [B, ", C, ", ", S, ", ", S, "], got ",
           images.defined() ? shape_str(images.shape()) : "undefined");
  const int64_t B = images.size(0), d = config.block.dim;
  // [B, C, G, P, G, P] -> [B, G, G, C, P, P] -> [B, G*G, C*P*P]
  Tensor patches = reshape(permute(reshape(images, {B, C, G, P, G, P}), {0, 2, 4, 1, 3, 5}), {B, G * G, C * P * P});
  Tensor h = concat({expand(class_token, {B, 1, d}), patch_embed->forward(patches)}, 1);
  h = positions->forward(h);
  StackState state;
  for (auto& layer : layers) h = layer->forward(h, state);
  Tensor cls = squeeze(narrow(final_norm->forward(h), 1, 0, 1), 1);
  ViTOutput out;
  out.logits = head->forward(cls);
  const DType dt = out.logits.dtype();
  const Device dev = out.logits.device();  // zero losses beside the logits, for the sums in the trainers
  out.balance_loss = state.balance_loss.defined() ? state.balance_loss : Tensor::zeros({}, dt, dev);
  out.z_loss = state.z_loss.defined() ? state.z_loss : Tensor::zeros({}, dt, dev);
  return out;
}

std::vector<std::pair<int64_t, RoutingStats>> ViT::routing_stats() const { return stack_routing_stats(layers); }

}  // namespace moegrad
