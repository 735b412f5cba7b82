// A small Vision Transformer for MNIST-style images: non-overlapping patches
// flattened and linearly embedded, a learned class token and positions, the
// sublayers of an architecture string (moe/blocks.h; with block.soft_moe the
// MoE layers are Soft MoE, else top-k MoE; c adds AC), a final LayerNorm and
// a linear head on the class token.
#pragma once
#include "moe/blocks.h"

namespace moegrad {

struct ViTConfig {
  int64_t image_size = 28, patch = 4, channels = 1, classes = 10;
  std::string arch = "sgsc";
  BlockConfig block;  // causal is forced off
};

struct ViTOutput {
  Tensor logits;        // [B, classes]
  Tensor balance_loss;  // top-k MoE layers only (scalar zero otherwise)
  Tensor z_loss;
};

class ViT : public Module {
 public:
  ViT(const ViTConfig& config, const InitOptions& opt = {});
  // images: [B, channels, image_size, image_size]
  ViTOutput forward(const Tensor& images);
  std::vector<std::pair<int64_t, RoutingStats>> routing_stats() const;
  ViTConfig config;
  std::shared_ptr<Linear> patch_embed;
  Tensor class_token;  // [1, 1, dim]
  std::shared_ptr<PositionalEmbedding> positions;
  std::vector<std::shared_ptr<Sublayer>> layers;
  std::shared_ptr<LayerNorm> final_norm;
  std::shared_ptr<Linear> head;
};

}  // namespace moegrad
