// Data parallelism: parameter broadcast, gradient averaging, batch slices (data_parallel.h).
#include "dist/data_parallel.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/error.h"

namespace moegrad::dist {

void broadcast_parameters(Communicator& comm, const std::vector<Tensor>& params) {
  if (comm.world_size() == 1) return;
  comm.broadcast(params, 0);
}

void average_gradients(Communicator& comm, const std::vector<Tensor>& params) {
  const int n = comm.world_size();
  if (n == 1) return;
  NoGradGuard no_grad;
  // grads[i]: the parameter's gradient, zeros where undefined; defined[i]: 1 where defined
  std::vector<Tensor> grads;
  std::vector<double> flags;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    grads.push_back(g.defined() ? contiguous(g) : Tensor::zeros(p.shape(), p.dtype(), p.device()));
    flags.push_back(g.defined() ? 1.0 : 0.0);
  }
  Tensor defined = Tensor::from_vector(flags, {static_cast<int64_t>(flags.size())}, DType::Float64);
  grads.push_back(defined);
  comm.all_reduce_sum(grads);
  const std::vector<double> any = defined.to_vector();
  const double scale = 1.0 / static_cast<double>(n);
  for (size_t i = 0; i < params.size(); ++i) {
    if (any[i] == 0) continue;
    params[i].set_grad(mul(grads[i], scale));
  }
}

double average_over_ranks(Communicator& comm, double value) {
  if (comm.world_size() == 1) return value;
  Tensor t = Tensor::from_vector({value}, {1}, DType::Float64);
  comm.all_reduce_sum({t});
  return t.item() / static_cast<double>(comm.world_size());
}

std::pair<int64_t, int64_t> local_rows(const Communicator& comm, int64_t global_rows, const char* what) {
  const int64_t n = comm.world_size();
  MG_CHECK(global_rows % n == 0, what, " ", global_rows, " is not divisible by the number of ranks ", n);
  const int64_t rows = global_rows / n;
  return {comm.rank() * rows, rows};
}

}  // namespace moegrad::dist
