// The image attacks of docs/design.md ("Evaluation under corruption"): FGSM and
// PGD under an L∞ budget ε given in pixel units /255, for images in [0, 1].
//
//   FGSM: x' = clip(x + ε sign(∇x L), 0, 1)
//   PGD:  x'_0 = x (or a uniform point of the ε-ball with random_start);
//         x'_{t+1} = clip(clip(x'_t + α sign(∇x L(x'_t)), x - ε, x + ε), 0, 1), α = 0.15 ε, 20 steps
//
// L is the cross-entropy summed over the batch (the sum, not the mean, so a
// large batch does not shrink float32 gradients towards zero). ∇x L comes from
// moegrad's own autograd: the images become a leaf that requires grad and
// L.backward() fills its grad(). During an attack the model is in eval mode
// and its parameters are frozen (requires_grad off), so the backward builds no
// parameter gradients: the parameters' grad() is left exactly as it was, and
// the backward is cheaper. Both are restored afterwards, also on an Error.
//
// The images' gradient is whatever the model's ops define: for an AC model in
// the paper's detached mode, W counts as a constant (as in the paper's code).
#pragma once
#include <cstdint>
#include <functional>

#include "nn/module.h"

namespace moegrad::data {

// The model under attack: the module (switched to eval mode and frozen while
// attacking) and the function from images [B, C, H, W] to logits [B, classes].
struct Classifier {
  Module& module;
  std::function<Tensor(const Tensor& images)> logits;
};

struct AttackOptions {
  double epsilon = 4;           // L∞ budget in pixel units /255, in [0, 255]
  int64_t steps = 20;           // PGD iterations, >= 1
  double step_fraction = 0.15;  // PGD step size α as a fraction of ε, > 0
  bool random_start = false;    // PGD: start from x + U(-ε, ε), clipped to [0, 1]
  uint64_t seed = 0;            // the random start's generator seed
};

// The summed cross-entropy at `images` and its gradient with respect to them
// (same shape and dtype), with the model in eval mode and frozen.
struct InputGradient {
  double loss = 0;
  Tensor grad;
};
InputGradient input_gradient(const Classifier& model, const Tensor& images, const Tensor& labels);

// Adversarial images, detached, contiguous, same shape and dtype as `images`.
// images: float [B, C, H, W] with values in [0, 1]; labels: int64 [B].
// Errors: ε outside [0, 255] or not finite, steps < 1, step_fraction <= 0,
// images not 4-d float or outside [0, 1], labels not int64 [B], logits not
// [B, classes]; each message names "fgsm" or "pgd".
Tensor fgsm(const Classifier& model, const Tensor& images, const Tensor& labels, double epsilon);
Tensor pgd(const Classifier& model, const Tensor& images, const Tensor& labels, const AttackOptions& options = {});

}  // namespace moegrad::data
