// Communicators: the collective operations that data and expert parallelism
// need, over a group of processes ("ranks").
//
// Communicator is the interface; an implementation decides how bytes move.
// SingleProcessCommunicator is the group of one (every operation is a copy or
// nothing), so callers never branch on the world size. MpiCommunicator
// (dist/mpi_communicator.h, built when MPI is found) moves data with MPI; a
// NCCL implementation could keep CUDA tensors on the device instead.
//
// Results never depend on timing: all_reduce_sum gathers every rank's values
// to rank 0, which sums them in rank order (x_0 + x_1 + ... + x_{N-1}, in
// float64) and broadcasts the sums. Tensors of any device are accepted; a
// CUDA tensor is staged through host memory (copied to the host, sent,
// copied back).
//
// Every operation is collective: all ranks call it in the same order with
// matching arguments. Arguments that one rank refuses, or sizes that do not
// match across ranks, are an Error on every rank (each rank's checks and
// sizes are exchanged first), not a hang.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace moegrad::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // In place: each tensor (float32 or float64, any layout and device) becomes
  // the element-wise sum of that tensor over all ranks. Every rank passes
  // tensors of the same shapes in the same order.
  virtual void all_reduce_sum(const std::vector<Tensor>& tensors) = 0;
  // In place: each tensor (any dtype, layout and device) becomes root's.
  virtual void broadcast(const std::vector<Tensor>& tensors, int root = 0) = 0;
  // send[r] is how many rows this rank sends to rank r; returns recv, where
  // recv[r] is how many rows rank r sends to this one.
  virtual std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& send) = 0;
  // rows [sum(send), ...]: its first send[0] rows go to rank 0, the next
  // send[1] to rank 1, and so on. Returns [sum(recv), ...] on rows' device:
  // rank 0's rows first, then rank 1's. recv must be all_to_all_counts(send).
  virtual Tensor all_to_all(const Tensor& rows, const std::vector<int64_t>& send,
                            const std::vector<int64_t>& recv) = 0;
  virtual void barrier() = 0;
  // Ends the processes of every rank with exit status `status`, without
  // waiting for them (for a failure on one rank while the others may be
  // inside a collective). Does not return.
  virtual void abort_all(int status) = 0;
};

using CommPtr = std::shared_ptr<Communicator>;

class SingleProcessCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(const std::vector<Tensor>& tensors) override;
  void broadcast(const std::vector<Tensor>& tensors, int root = 0) override;
  std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& send) override;
  Tensor all_to_all(const Tensor& rows, const std::vector<int64_t>& send, const std::vector<int64_t>& recv) override;
  void barrier() override {}
  void abort_all(int status) override;
};

// The communicator of every process of this run: in a build with MPI and a
// process that mpirun started, MPI_COMM_WORLD (MPI is initialised on the
// first call and finalised when the process exits); otherwise a
// SingleProcessCommunicator, so a program run alone never starts MPI. Every
// call returns the same one.
CommPtr world();
// True when this build has the MPI communicator.
bool built_with_mpi();
// The number of processes a launcher (mpirun, or a PMI one) started for this
// run, from its environment: 1 when none did. A build without MPI refuses
// (world() throws) to run as one of several, where each process would train
// alone and write the same files.
int launched_world_size();

// Runs fn on every rank; when it throws on any rank, every rank throws the
// same Error: the message of the lowest failing rank, prefixed "rank R: "
// when the world has more than one rank. Used around setup (options, data,
// model) so that a failure on one rank cannot leave the others waiting.
void run_on_all_or_fail(Communicator& comm, const std::function<void()>& fn);
// Collective: every rank throws rank `first`'s Error, "rank F: <its message>"
// (the message is sent from there; the others' is ignored), or the message
// alone in a world of one. For a failure every rank already knows of, as
// run_on_all_or_fail's, or a flag carried by another exchange.
[[noreturn]] void throw_failure_of(Communicator& comm, int first, const std::string& message);

// Collective: root receives every rank's rows ([n_r, ...], of one dtype and
// trailing shape on all ranks) stacked in rank order, [n_0 + n_1 + ..., ...];
// the other ranks get an undefined tensor. One all_to_all in which only root
// receives (how sharded expert weights come together in one checkpoint).
Tensor gather_rows(Communicator& comm, const Tensor& rows, int root = 0);

}  // namespace moegrad::dist
