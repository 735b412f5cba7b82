// The single-process communicator, the setup agreement and gather_rows (communicator.h).
#include "dist/communicator.h"

#include <cstdlib>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "dist/staging.h"
#include "tensor/error.h"

namespace moegrad::dist {

void SingleProcessCommunicator::all_reduce_sum(const std::vector<Tensor>& tensors) {
  pack_values(tensors, "all_reduce_sum");  // checks the dtypes; the sum over one rank is the tensor itself
}

void SingleProcessCommunicator::broadcast(const std::vector<Tensor>& tensors, int root) {
  MG_CHECK(root == 0, "broadcast: root ", root, " is not a rank of a world of 1");
  for (const Tensor& t : tensors) MG_CHECK(t.defined(), "broadcast: an undefined tensor cannot be communicated");
}

std::vector<int64_t> SingleProcessCommunicator::all_to_all_counts(const std::vector<int64_t>& send) {
  check_counts(send, 1, "all_to_all_counts", "send");
  return send;
}

Tensor SingleProcessCommunicator::all_to_all(const Tensor& rows, const std::vector<int64_t>& send,
                                             const std::vector<int64_t>& recv) {
  check_all_to_all(rows, send, recv, 1);
  MG_CHECK(send == recv, "all_to_all: a world of 1 receives what it sends, got send ", send[0], ", recv ", recv[0]);
  NoGradGuard no_grad;
  return clone(rows.detach());
}

void SingleProcessCommunicator::abort_all(int status) { std::exit(status); }

void run_on_all_or_fail(Communicator& comm, const std::function<void()>& fn) {
  std::string message;
  try {
    fn();
  } catch (const std::exception& e) {
    message = e.what();
    if (message.empty()) message = "failed";
  }
  const int n = comm.world_size();
  if (n == 1) {
    MG_CHECK(message.empty(), message);
    return;
  }
  // failed[r] = 1 when rank r failed; the lowest failing rank tells the others its message
  std::vector<double> flags(n, 0.0);
  flags[comm.rank()] = message.empty() ? 0.0 : 1.0;
  Tensor failed = Tensor::from_vector(flags, {n}, DType::Float64);
  comm.all_reduce_sum({failed});
  const std::vector<double> any = failed.to_vector();
  int first = -1;
  for (int r = 0; r < n && first < 0; ++r)
    if (any[r] > 0) first = r;
  if (first >= 0) throw_failure_of(comm, first, message);
}

void throw_failure_of(Communicator& comm, int first, const std::string& message) {
  if (comm.world_size() == 1) throw Error(message);
  Tensor length = Tensor::from_indices({static_cast<int64_t>(message.size())}, {1});
  comm.broadcast({length}, first);
  const int64_t size = length.to_indices()[0];
  std::vector<int64_t> chars(message.begin(), message.end());
  chars.resize(static_cast<size_t>(size));
  Tensor text = Tensor::from_indices(chars, {size});
  comm.broadcast({text}, first);
  const std::vector<int64_t> got = text.to_indices();
  throw Error("rank " + std::to_string(first) + ": " + std::string(got.begin(), got.end()));
}

Tensor gather_rows(Communicator& comm, const Tensor& rows, int root) {
  MG_CHECK(root >= 0 && root < comm.world_size(), "gather_rows: root ", root, " is not a rank of a world of ",
           comm.world_size());
  std::vector<int64_t> send(comm.world_size(), 0);
  // an undefined or 0-d tensor sends -1 rows, which every rank's all_to_all_counts
  // refuses together (a check here, on one rank, would leave the others waiting)
  const int64_t n = rows.defined() && rows.dim() >= 1 ? rows.size(0) : -1;
  send[root] = n;
  std::vector<int64_t> recv;
  try {
    recv = comm.all_to_all_counts(send);
  } catch (const Error&) {
    MG_CHECK(n >= 0, "gather_rows: rows must be a tensor of at least one dim, got ",
             rows.defined() ? "a 0-d tensor" : "an undefined tensor");
    throw;
  }
  Tensor all = comm.all_to_all(rows, send, recv);
  return comm.rank() == root ? all : Tensor();
}

}  // namespace moegrad::dist
