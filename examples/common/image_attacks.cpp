// FGSM and PGD through moegrad's autograd (see image_attacks.h).
#include "examples/common/image_attacks.h"

#include <algorithm>
#include <cmath>

#include "autograd/node.h"

namespace moegrad::data {
namespace {

// While alive: the module in eval mode, its parameters frozen, grad mode on.
class AttackScope {
 public:
  explicit AttackScope(Module& m) : module_(m), was_training_(m.training()), grad_was_on_(grad_enabled()) {
    module_.eval();
    for (Tensor& p : module_.parameters())
      if (p.requires_grad()) frozen_.push_back(p.requires_grad_(false));
    set_grad_enabled(true);
  }
  ~AttackScope() {
    for (Tensor& p : frozen_) p.requires_grad_(true);
    module_.train(was_training_);
    set_grad_enabled(grad_was_on_);
  }
  AttackScope(const AttackScope&) = delete;
  AttackScope& operator=(const AttackScope&) = delete;

 private:
  Module& module_;
  bool was_training_, grad_was_on_;
  std::vector<Tensor> frozen_;
};

void check_batch(const Tensor& images, const Tensor& labels, const char* op) {
  MG_CHECK(images.defined() && images.dim() == 4 && is_floating(images.dtype()), op,
           ": expected float images [B, C, H, W], got ",
           images.defined() ? shape_str(images.shape()) + " " + dtype_name(images.dtype()) : "undefined");
  MG_CHECK(labels.defined() && labels.dtype() == DType::Int64 && labels.dim() == 1 && labels.size(0) == images.size(0),
           op, ": expected int64 labels [", images.size(0), "], got ",
           labels.defined() ? shape_str(labels.shape()) + " " + dtype_name(labels.dtype()) : "undefined");
  for (double v : images.to_vector())
    MG_CHECK(v >= 0.0 && v <= 1.0, op, ": images must lie in [0, 1], found the value ", v);
}

void check_epsilon(double epsilon, const char* op) {
  MG_CHECK(std::isfinite(epsilon) && epsilon >= 0 && epsilon <= 255, op,
           ": epsilon (pixel units /255) must be in [0, 255], got ", epsilon);
}

// Summed cross-entropy of the model at x (a leaf that requires grad); fills x.grad().
double loss_and_backward(const Classifier& model, const Tensor& x, const Tensor& labels, const char* op) {
  Tensor logits = model.logits(x);
  MG_CHECK(logits.defined() && logits.dim() == 2 && logits.size(0) == x.size(0), op, ": expected logits [",
           x.size(0), ", classes], got ", logits.defined() ? shape_str(logits.shape()) : "undefined");
  Tensor loss = mul(cross_entropy(logits, labels), static_cast<double>(x.size(0)));
  MG_CHECK(loss.requires_grad(), op, ": the logits do not depend on the images");
  loss.backward();
  return loss.item();
}

// The gradient of the summed cross-entropy at images (any layout).
Tensor gradient_at(const Classifier& model, const Tensor& images, const Tensor& labels, const char* op,
                   double* loss = nullptr) {
  Tensor x = images.detach();  // a fresh leaf over the same data
  x.requires_grad_();
  const double l = loss_and_backward(model, x, labels, op);
  if (loss) *loss = l;
  Tensor g = x.grad();
  return g.defined() ? g : Tensor::zeros(images.shape(), images.dtype(), images.device());
}

// clip(clip(base + alpha sign(g), x - eps, x + eps), 0, 1), elementwise; g
// undefined counts as zero. All in x's dtype; a new contiguous tensor on x's
// device. Computed on the host (for CUDA images: three copies there and one
// back per attack step, next to a whole forward and backward).
Tensor step_and_project(const Tensor& x, const Tensor& base, const Tensor& g, double alpha, double eps) {
  const Device cpu = Device::cpu();
  Tensor xc = contiguous(x.to(cpu)), bc = contiguous(base.to(cpu).to(x.dtype()));
  Tensor gc = g.defined() ? contiguous(g.to(cpu).to(x.dtype())) : Tensor();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "attack step", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *px = xc.data<T>(), *pb = bc.data<T>(), *pg = gc.defined() ? gc.data<T>() : nullptr;
    T* po = out.data<T>();
    const T a = static_cast<T>(alpha), e = static_cast<T>(eps);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const T s = pg ? static_cast<T>((pg[i] > 0) - (pg[i] < 0)) : T(0);
      const T v = std::clamp(pb[i] + a * s, px[i] - e, px[i] + e);
      po[i] = std::clamp(v, T(0), T(1));
    }
  });
  return out.to(x.device());
}

}  // namespace

InputGradient input_gradient(const Classifier& model, const Tensor& images, const Tensor& labels) {
  check_batch(images, labels, "input_gradient");
  AttackScope scope(model.module);
  InputGradient r;
  r.grad = gradient_at(model, images, labels, "input_gradient", &r.loss);
  return r;
}

Tensor fgsm(const Classifier& model, const Tensor& images, const Tensor& labels, double epsilon) {
  check_epsilon(epsilon, "fgsm");
  check_batch(images, labels, "fgsm");
  AttackScope scope(model.module);
  const double eps = epsilon / 255.0;
  Tensor g = gradient_at(model, images, labels, "fgsm");
  NoGradGuard no_grad;
  return step_and_project(images, images, g, eps, eps);
}

Tensor pgd(const Classifier& model, const Tensor& images, const Tensor& labels, const AttackOptions& o) {
  check_epsilon(o.epsilon, "pgd");
  MG_CHECK(o.steps >= 1, "pgd: steps must be at least 1, got ", o.steps);
  MG_CHECK(std::isfinite(o.step_fraction) && o.step_fraction > 0, "pgd: step_fraction must be positive, got ",
           o.step_fraction);
  check_batch(images, labels, "pgd");
  AttackScope scope(model.module);
  const double eps = o.epsilon / 255.0, alpha = o.step_fraction * eps;
  Tensor adv;
  {
    NoGradGuard no_grad;
    if (o.random_start) {
      Generator gen(o.seed);
      const Tensor noise = Tensor::rand(images.shape(), -eps, eps, images.dtype(), &gen).to(images.device());
      adv = step_and_project(images, images + noise, Tensor(), 0.0, eps);
    } else {
      adv = contiguous(images.detach());
    }
  }
  for (int64_t t = 0; t < o.steps; ++t) {
    Tensor g = gradient_at(model, adv, labels, "pgd");
    NoGradGuard no_grad;
    adv = step_and_project(images, adv, g, alpha, eps);
  }
  return adv;
}

}  // namespace moegrad::data
