// The basic layers (see layers.h). Each forward is a composition of
// differentiable ops, so each gets its backward from them.
#include "nn/layers.h"

#include <Eigen/QR>
#include <cmath>

namespace moegrad {

Tensor init_uniform(const Shape& shape, double bound, const InitOptions& opt) {
  return Tensor::rand(shape, -bound, bound, opt.dtype, &opt.generator());
}

Tensor init_normal(const Shape& shape, double std, const InitOptions& opt) {
  return Tensor::randn(shape, 0.0, std, opt.dtype, &opt.generator());
}

Tensor init_orthogonal(int64_t rows, int64_t cols, double gain, const InitOptions& opt) {
  MG_CHECK(rows > 0 && cols > 0, "init_orthogonal: sizes must be positive, got ", rows, " x ", cols);
  // QR of the tall one of G [rows, cols] and its transpose: Q's columns are orthonormal
  const int64_t m = std::max(rows, cols), n = std::min(rows, cols);
  const std::vector<double> g = Tensor::randn({rows, cols}, 0.0, 1.0, DType::Float64, &opt.generator()).to_vector();
  Eigen::MatrixXd a(m, n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) (rows >= cols ? a(r, c) : a(c, r)) = g[r * cols + c];
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(a);
  Eigen::MatrixXd q = qr.householderQ() * Eigen::MatrixXd::Identity(m, n);
  const Eigen::MatrixXd R = qr.matrixQR().topRows(n).triangularView<Eigen::Upper>();
  for (int64_t j = 0; j < n; ++j)
    if (R(j, j) < 0) q.col(j) *= -1;  // unique Q: R with a positive diagonal
  std::vector<double> out(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = gain * (rows >= cols ? q(r, c) : q(c, r));
  return Tensor::from_vector(out, {rows, cols}, opt.dtype);
}

Tensor activate(const Tensor& x, Activation activation) { return activation == Activation::Relu ? relu(x) : gelu(x); }

Linear::Linear(int64_t in, int64_t out, bool use_bias, const InitOptions& opt) : in_features(in), out_features(out) {
  MG_CHECK(in > 0 && out > 0, "Linear: features must be positive, got in=", in, " out=", out);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = register_parameter("weight", init_uniform({out, in}, bound, opt));
  if (use_bias) bias = register_parameter("bias", init_uniform({out}, bound, opt));
}

Tensor Linear::forward(const Tensor& x) const {
  MG_CHECK(x.defined() && x.dim() >= 1 && x.shape().back() == in_features, "Linear: expected input [..., ",
           in_features, "], got ", x.defined() ? shape_str(x.shape()) : "undefined");
  Tensor y = matmul(x, transpose(weight, 0, 1));
  return bias.defined() ? add(y, bias) : y;
}

LayerNorm::LayerNorm(int64_t dim, double eps_, const InitOptions& opt) : eps(eps_) {
  MG_CHECK(dim > 0, "LayerNorm: dim must be positive, got ", dim);
  weight = register_parameter("weight", Tensor::ones({dim}, opt.dtype));
  bias = register_parameter("bias", Tensor::zeros({dim}, opt.dtype));
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

Embedding::Embedding(int64_t num, int64_t dim, double std, const InitOptions& opt) {
  MG_CHECK(num > 0 && dim > 0, "Embedding: sizes must be positive, got num=", num, " dim=", dim);
  weight = register_parameter("weight", init_normal({num, dim}, std, opt));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight, ids); }

PositionalEmbedding::PositionalEmbedding(int64_t max_len, int64_t dim, double std, const InitOptions& opt) {
  MG_CHECK(max_len > 0 && dim > 0, "PositionalEmbedding: sizes must be positive, got max_len=", max_len,
           " dim=", dim);
  weight = register_parameter("weight", init_normal({max_len, dim}, std, opt));
}

Tensor PositionalEmbedding::forward(const Tensor& x) const {
  MG_CHECK(x.defined() && x.dim() == 3 && x.size(2) == weight.size(1), "PositionalEmbedding: expected [B, T, ",
           weight.size(1), "], got ", x.defined() ? shape_str(x.shape()) : "undefined");
  MG_CHECK(x.size(1) <= weight.size(0), "PositionalEmbedding: sequence length ", x.size(1), " exceeds max_len ",
           weight.size(0));
  return add(x, narrow(weight, 0, 0, x.size(1)));
}

Dropout::Dropout(double p_, uint64_t seed) : p(p_), gen(seed) {
  MG_CHECK(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got ", p);
  register_generator("gen", &gen);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, training(), &gen); }

FFN::FFN(int64_t dim, int64_t hidden, double p, const InitOptions& opt, Activation act) : activation(act) {
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden, true, opt));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim, true, opt));
  Generator& g = opt.generator();
  drop = register_module("drop", std::make_shared<Dropout>(p, random_bits(g.seed(), g.take(1))));
}

Tensor FFN::forward(const Tensor& x) { return fc2->forward(drop->forward(activate(fc1->forward(x), activation))); }

}  // namespace moegrad
