// Graph nodes. Every differentiable op that sees an input requiring grad
// attaches a Node to its result: the node saves what its hand-written
// backward needs and holds one Edge per input, pointing either to the input's
// own grad_fn or, for a leaf, to the leaf itself (where gradients accumulate).
// The engine (engine.cpp) only orders nodes and calls backward().
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace moegrad {

struct Edge {
  std::shared_ptr<Node> fn;          // input produced by another op
  std::shared_ptr<TensorImpl> leaf;  // or: a leaf that requires grad
  Shape shape;                       // the input's shape, to validate gradients
  DType dtype = DType::Float32;
  bool active() const { return fn || leaf; }
};

struct Node {
  virtual ~Node() = default;
  virtual const char* name() const = 0;
  // Given d(loss)/d(output), returns d(loss)/d(input_k) for every input k, in
  // the order the inputs were attached. An undefined tensor means "no gradient"
  // (e.g. for an integer input). Runs with grad mode off.
  virtual std::vector<Tensor> backward(const Tensor& dout) = 0;
  // Drops saved tensors once the graph is freed.
  virtual void release() {}

  std::vector<Edge> inputs;
  bool released = false;
};

// --- grad mode ---
bool grad_enabled();
void set_grad_enabled(bool on);

// Disables graph recording in its scope (evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any of the tensors requires grad: only then
// does an op build a node.
bool any_requires_grad(std::initializer_list<Tensor> tensors);
bool any_requires_grad(const std::vector<Tensor>& tensors);

// Makes `node` the grad_fn of `out` with one edge per input (in order).
void attach_node(Tensor& out, std::shared_ptr<Node> node, std::initializer_list<Tensor> inputs);
void attach_node(Tensor& out, std::shared_ptr<Node> node, const std::vector<Tensor>& inputs);

// For ops whose backward is a line or two: a node that calls `fn`. Tensors the
// lambda captures are dropped when the graph is freed.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& dout)>;
struct FunctionBackward : Node {
  const char* op;
  BackwardFn fn;
  FunctionBackward(const char* op_name, BackwardFn f) : op(op_name), fn(std::move(f)) {}
  const char* name() const override { return op; }
  std::vector<Tensor> backward(const Tensor& dout) override { return fn(dout); }
  void release() override { fn = nullptr; }
};

// If grad mode is on and an input requires grad: attaches a FunctionBackward.
// Build `fn` cheaply (capture detached tensors); it is dropped otherwise.
void attach_backward(Tensor& out, const char* op, std::initializer_list<Tensor> inputs, BackwardFn fn);
void attach_backward(Tensor& out, const char* op, const std::vector<Tensor>& inputs, BackwardFn fn);

// Runs backpropagation from `root` with seed `grad`.
void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph);

}  // namespace moegrad
