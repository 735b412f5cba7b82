// The basic layers: Linear, LayerNorm, Embedding, learned positional
// embedding, Dropout and the feed-forward block (GELU or ReLU), with the
// initialisers they use. Shapes follow PyTorch (Linear.weight is [out, in])
// so checkpoints map one-to-one.
#pragma once
#include "nn/module.h"

namespace moegrad {

// U(-bound, bound) and N(0, std²) parameter tensors.
Tensor init_uniform(const Shape& shape, double bound, const InitOptions& opt);
Tensor init_normal(const Shape& shape, double std, const InitOptions& opt);
// [rows, cols] with orthonormal rows (rows <= cols) or columns, times gain,
// as PyTorch's orthogonal_: the Q of a Gaussian matrix's QR, signs fixed by R's diagonal.
Tensor init_orthogonal(int64_t rows, int64_t cols, double gain, const InitOptions& opt);

// The hidden activation of the feed-forward blocks and experts. GELU is the
// tanh form.
enum class Activation { Gelu, Relu };
Tensor activate(const Tensor& x, Activation activation);

// y = x Wᵀ + b over the last dim. Init as PyTorch: U(±1/√in) for W and b.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, const InitOptions& opt = {});
  Tensor forward(const Tensor& x) const;
  int64_t in_features, out_features;
  Tensor weight, bias;  // bias undefined when bias = false
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, const InitOptions& opt = {});
  Tensor forward(const Tensor& x) const;
  double eps;
  Tensor weight, bias;
};

// weight [num, dim] ~ N(0, std²); forward(int64 ids of any shape) -> [..., dim].
class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, double std = 0.02, const InitOptions& opt = {});
  Tensor forward(const Tensor& ids) const;
  Tensor weight;
};

// Learned positions: weight [max_len, dim]; forward(x [B, T, dim]) adds the
// first T rows.
class PositionalEmbedding : public Module {
 public:
  PositionalEmbedding(int64_t max_len, int64_t dim, double std = 0.02, const InitOptions& opt = {});
  Tensor forward(const Tensor& x) const;
  Tensor weight;
};

// Dropout with its own seeded generator, active in training mode only.
class Dropout : public Module {
 public:
  explicit Dropout(double p, uint64_t seed = 0);
  Tensor forward(const Tensor& x);
  double p;
  Generator gen;
};

// fc2(dropout(act(fc1(x)))): the dense FFN and each expert's shape.
class FFN : public Module {
 public:
  FFN(int64_t dim, int64_t hidden, double dropout = 0.0, const InitOptions& opt = {},
      Activation activation = Activation::Gelu);
  Tensor forward(const Tensor& x);
  Activation activation;
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<Dropout> drop;
};

}  // namespace moegrad
