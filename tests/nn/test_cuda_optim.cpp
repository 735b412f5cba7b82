// The optimizers of nn/optim.h on CUDA parameters (the fused kernels of
// cuda/optim.cu) against the same optimizer on CPU copies: SGD with and
// without momentum and weight decay, Adam and AdamW, float32 and float64,
// over several steps with new gradients each step (some steps leave a
// parameter without one), parameters of several sizes (empty, one element,
// more than a block); the state on the device; load_state from host buffers;
// gradient clipping by global norm (lm::clip_grad_norm) on device gradients;
// errors.
#include <functional>
#include <memory>

#include "examples/common/lm_trainer.h"
#include "test_cuda_helpers.h"

#ifdef MOEGRAD_WITH_CUDA
#include "cuda/optim.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

const std::vector<Shape> kShapes = {{3, 4}, {1}, {0}, {1000}, {2, 3, 300}};

using MakeOpt = std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>;

const std::vector<std::pair<const char*, MakeOpt>> kOptimizers = {
    {"SGD", [](std::vector<Tensor> p) { return std::make_unique<SGD>(std::move(p), SGDOptions{0.1}); }},
    {"SGD momentum wd",
     [](std::vector<Tensor> p) { return std::make_unique<SGD>(std::move(p), SGDOptions{0.05, 0.9, 0.01}); }},
    {"Adam", [](std::vector<Tensor> p) { return std::make_unique<Adam>(std::move(p), AdamOptions{0.01}); }},
    {"Adam wd",
     [](std::vector<Tensor> p) {
       return std::make_unique<Adam>(std::move(p), AdamOptions{0.01, 0.8, 0.99, 1e-6, 0.1});
     }},
    {"AdamW",
     [](std::vector<Tensor> p) {
       return std::make_unique<AdamW>(std::move(p), AdamOptions{0.02, 0.9, 0.999, 1e-8, 0.05});
     }},
};

std::vector<Tensor> params_on(const std::vector<Tensor>& host, Device device) {
  std::vector<Tensor> out;
  for (const Tensor& h : host) {
    Tensor p = Tensor::empty(h.shape(), h.dtype(), device);
    p.copy_(h);
    p.requires_grad_();
    out.push_back(p);
  }
  return out;
}

}  // namespace

TEST(CudaOptim, StepsMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const auto& [name, make] : kOptimizers) {
      SCOPED_TRACE(std::string(name) + " " + dtype_name(dtype));
      std::vector<Tensor> init;
      for (size_t i = 0; i < kShapes.size(); ++i) init.push_back(uniform(kShapes[i], dtype, 10 + i));
      std::vector<Tensor> pc = params_on(init, Device::cpu()), pg = params_on(init, Device::cuda(0));
      auto oc = make(pc), og = make(pg);
      for (int step = 0; step < 6; ++step) {
        for (size_t i = 0; i < pc.size(); ++i) {
          if ((step + i) % 4 == 3) {  // no gradient this step: skipped
            pc[i].zero_grad(), pg[i].zero_grad();
            continue;
          }
          const Tensor g = uniform(kShapes[i], dtype, 100 * step + i);
          pc[i].set_grad(g);
          pg[i].set_grad(on_cuda(g));
        }
        oc->set_lr(oc->lr() * 0.9), og->set_lr(og->lr() * 0.9);
        oc->step();
        og->step();
      }
      for (size_t i = 0; i < pc.size(); ++i) {
        EXPECT_TRUE(pg[i].device().is_cuda());
        expect_close(pg[i], pc[i], "parameter " + std::to_string(i));
        const ParamState &sc = oc->state()[i], &sg = og->state()[i];
        EXPECT_EQ(sg.step, sc.step);
        ASSERT_EQ(sg.buffers.size(), sc.buffers.size());
        for (size_t k = 0; k < sc.buffers.size(); ++k) {
          EXPECT_TRUE(sg.buffers[k].device().is_cuda());
          expect_close(sg.buffers[k], sc.buffers[k], og->buffer_names()[k]);
        }
      }
    }
}

TEST(CudaOptim, LoadStateCopiesHostBuffersOntoTheDevice) {
  MG_SKIP_WITHOUT_CUDA();
  const Tensor init = uniform({5}, DType::Float64, 1);
  std::vector<Tensor> pc = params_on({init}, Device::cpu()), pg = params_on({init}, Device::cuda(0));
  Adam oc(pc, AdamOptions{0.01}), og(pg, AdamOptions{0.01});
  pc[0].set_grad(uniform({5}, DType::Float64, 2));
  oc.step();
  og.load_state(oc.state());  // CPU buffers
  ASSERT_EQ(og.state()[0].buffers.size(), 2u);
  EXPECT_TRUE(og.state()[0].buffers[0].device().is_cuda());
  EXPECT_EQ(og.state()[0].buffers[1].to_vector(), oc.state()[0].buffers[1].to_vector());
  pg[0].copy_(pc[0]);
  const Tensor g = uniform({5}, DType::Float64, 3);
  pc[0].set_grad(g), pg[0].set_grad(on_cuda(g));
  oc.step(), og.step();
  expect_close(pg[0], pc[0], "after the loaded state");
}

TEST(CudaOptim, ClipGradNormMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    std::vector<Tensor> pc, pg;
    for (size_t i = 0; i < kShapes.size(); ++i) {
      Tensor c = Tensor::zeros(kShapes[i], dtype).requires_grad_();
      Tensor g = Tensor::zeros(kShapes[i], dtype, Device::cuda(0)).requires_grad_();
      if (i != 1) {  // parameter 1 has no gradient
        const Tensor grad = uniform(kShapes[i], dtype, 20 + i);
        c.set_grad(grad), g.set_grad(on_cuda(grad));
      }
      pc.push_back(c), pg.push_back(g);
    }
    for (double max_norm : {0.0, 1e6, 0.5}) {
      const double nc = lm::clip_grad_norm(pc, max_norm), ng = lm::clip_grad_norm(pg, max_norm);
      // both accumulate in double, in different orders
      EXPECT_NEAR(ng, nc, 1e-12 * nc) << dtype_name(dtype) << " max_norm " << max_norm;
      for (size_t i = 0; i < pc.size(); ++i)
        if (pc[i].grad().defined()) expect_close(pg[i].grad(), pc[i].grad(), "clipped grad " + std::to_string(i));
    }
    EXPECT_NEAR(lm::clip_grad_norm(pg, 0), 0.5, 1e-6);
  }
  EXPECT_EQ(cuda_global_norm({}), 0.0);
  EXPECT_EQ(cuda_global_norm({Tensor::zeros({0}, DType::Float32, Device::cuda(0))}), 0.0);
}

TEST(CudaOptim, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor p = Tensor::zeros({3}, DType::Float32, Device::cuda(0)).requires_grad_();
  Adam opt({p});
  p.set_grad(Tensor::zeros({3}));
  EXPECT_MG_ERROR(opt.step(), "Adam: gradient of parameter 0 is on cpu, the parameter on cuda:0");
  // a module moved after the optimizer's first step: its state stayed behind
  Generator g(1);
  Linear lin(3, 2, true, InitOptions{DType::Float32, &g});
  Adam moved(lin.parameters());
  for (const Tensor& w : lin.parameters()) w.set_grad(Tensor::ones(w.shape()));
  moved.step();
  lin.to(Device::cuda(0));
  for (const Tensor& w : lin.parameters()) w.set_grad(Tensor::ones(w.shape(), DType::Float32, Device::cuda(0)));
  EXPECT_MG_ERROR(moved.step(), "Adam: state 'm' of parameter 0 is on cpu, the parameter on cuda:0; build the optimizer "
                                "after Module::to");
  Tensor q = Tensor::zeros({3}).requires_grad_();
  q.set_grad(Tensor::ones({3}));
  p.set_grad(Tensor::ones({3}, DType::Float32, Device::cuda(0)));
  EXPECT_MG_ERROR(lm::clip_grad_norm({p, q}, 1.0), "grad_norm: gradients on cuda:0 and cpu");
  EXPECT_MG_ERROR(cuda_adam_update(p, Tensor::zeros({2}, DType::Float32, Device::cuda(0)), p, p, {}),
                  "Adam (CUDA): the gradient must be a contiguous float32 [3] on cuda:0, got a contiguous float32 [2]");
  EXPECT_MG_ERROR(cuda_sgd_update(Tensor::zeros({3}), Tensor::zeros({3}), Tensor(), 0.1, 0, 0, true),
                  "SGD (CUDA): the parameter must be a contiguous float32/float64 tensor on a CUDA device");
}

#endif  // MOEGRAD_WITH_CUDA
