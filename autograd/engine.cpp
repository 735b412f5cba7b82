// The backward engine: collects the nodes reachable from the root, counts how
// many consumers each has, and runs them in reverse topological order (a node
// runs once the gradients from all of its consumers have been summed). Leaf
// gradients accumulate into TensorImpl::grad. The engine differentiates
// nothing itself.
#include <unordered_map>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace moegrad {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool on) { g_grad_enabled = on; }

bool any_requires_grad(std::initializer_list<Tensor> tensors) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : tensors)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& tensors) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : tensors)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

static Edge edge_to(const Tensor& t) {
  Edge e;
  if (!t.defined()) return e;
  e.shape = t.shape();
  e.dtype = t.dtype();
  if (!t.requires_grad()) return e;
  if (t.grad_fn())
    e.fn = t.grad_fn();
  else
    e.leaf = t.impl_ptr();
  return e;
}

void attach_node(Tensor& out, std::shared_ptr<Node> node, const std::vector<Tensor>& inputs) {
  node->inputs.clear();
  for (const Tensor& t : inputs) node->inputs.push_back(edge_to(t));
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

void attach_node(Tensor& out, std::shared_ptr<Node> node, std::initializer_list<Tensor> inputs) {
  attach_node(out, std::move(node), std::vector<Tensor>(inputs));
}

void attach_backward(Tensor& out, const char* op, const std::vector<Tensor>& inputs, BackwardFn fn) {
  if (any_requires_grad(inputs)) attach_node(out, std::make_shared<FunctionBackward>(op, std::move(fn)), inputs);
}

void attach_backward(Tensor& out, const char* op, std::initializer_list<Tensor> inputs, BackwardFn fn) {
  attach_backward(out, op, std::vector<Tensor>(inputs), std::move(fn));
}

// The leaf's first gradient is taken over when nothing else can see it (no
// other reference to it or its storage, a whole contiguous buffer of the
// leaf's dtype), as PyTorch's AccumulateGrad does; otherwise it is copied, since
// it may be a view of another tensor's data. Later gradients are added in place.
static bool owned_outright(const Tensor& g, const TensorImpl& leaf) {
  return g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 && !g.requires_grad() && g.offset() == 0 &&
         g.dtype() == leaf.dtype && g.is_contiguous() &&
         g.storage()->nbytes() == static_cast<size_t>(g.numel()) * dtype_size(g.dtype());
}

static void accumulate_leaf(TensorImpl& leaf, Tensor g) {
  if (!leaf.grad) {
    if (owned_outright(g, leaf)) {
      leaf.grad = g.impl_ptr();
      return;
    }
    Tensor copy = Tensor::empty(g.shape(), leaf.dtype, g.device());
    copy.copy_(g);
    leaf.grad = copy.impl_ptr();
  } else {
    Tensor acc(leaf.grad);
    add_(acc, g);
  }
}

void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  MG_CHECK(root.requires_grad(), "backward: the tensor does not require grad (no input of the graph that made it ",
           "requires grad, or it was computed under NoGradGuard)");
  Tensor seed = grad;
  if (!seed.defined()) {
    MG_CHECK(root.numel() == 1, "backward: without an explicit gradient the tensor must have one element, got shape ",
             shape_str(root.shape()));
    seed = Tensor::ones(root.shape(), root.dtype(), root.device());
  }
  MG_CHECK(seed.shape() == root.shape(), "backward: gradient of shape ", shape_str(seed.shape()),
           " for a tensor of shape ", shape_str(root.shape()));
  MG_CHECK(seed.device() == root.device() && (seed.dtype() == DType::Float32 || seed.dtype() == DType::Float64),
           "backward: gradient of dtype ", dtype_name(seed.dtype()), " on ", seed.device().str(),
           " for a tensor of dtype ", dtype_name(root.dtype()), " on ", root.device().str(),
           " (a float gradient on the tensor's device)");
  if (seed.dtype() != root.dtype()) seed = seed.to(root.dtype());  // as PyTorch does
  NoGradGuard no_grad;
  if (!root.grad_fn()) {
    accumulate_leaf(*root.impl(), seed);
    return;
  }

  // 1. collect nodes reachable from the root and count their consumers
  std::unordered_map<Node*, int> consumers;
  std::vector<Node*> stack{root.grad_fn().get()};
  consumers[root.grad_fn().get()] = 0;
  std::vector<Node*> order;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    MG_CHECK(!n->released, "backward: the graph through ", n->name(),
             " was already freed by an earlier backward; pass retain_graph=true to backpropagate twice");
    order.push_back(n);
    for (const Edge& e : n->inputs) {
      if (!e.fn) continue;
      auto it = consumers.find(e.fn.get());
      if (it == consumers.end()) {
        consumers[e.fn.get()] = 1;
        stack.push_back(e.fn.get());
      } else {
        it->second++;
      }
    }
  }

  // 2. run each node once all of its consumers have delivered their gradient;
  // a node that received none still "runs" so that its inputs' counts drop
  std::unordered_map<Node*, Tensor> pending;
  pending[root.grad_fn().get()] = seed;
  std::vector<Node*> ready{root.grad_fn().get()};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor dout;
    if (auto it = pending.find(n); it != pending.end()) {
      dout = std::move(it->second);
      pending.erase(it);
    }
    std::vector<Tensor> grads(n->inputs.size());
    if (dout.defined()) {
      grads = n->backward(dout);
      MG_CHECK(grads.size() == n->inputs.size(), "backward: ", n->name(), " returned ", grads.size(),
               " gradients for ", n->inputs.size(), " inputs");
    }
    for (size_t k = 0; k < grads.size(); ++k) {
      const Edge& e = n->inputs[k];
      if (!e.active()) continue;
      const Tensor& g = grads[k];
      if (g.defined())
        MG_CHECK(g.shape() == e.shape, "backward: ", n->name(), " returned a gradient of shape ",
                 shape_str(g.shape()), " for input ", k, " of shape ", shape_str(e.shape));
      if (e.leaf) {
        if (g.defined()) accumulate_leaf(*e.leaf, std::move(grads[k]));
        continue;
      }
      Node* next = e.fn.get();
      if (g.defined()) {
        auto it = pending.find(next);
        if (it == pending.end())
          pending.emplace(next, g);
        else
          it->second = add(it->second, g);
      }
      if (--consumers[next] == 0) ready.push_back(next);
    }
  }

  if (!retain_graph) {
    for (Node* n : order) {
      n->release();
      n->released = true;
    }
  }
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const { run_backward(*this, grad, retain_graph); }

}  // namespace moegrad
