// The MPI communicator: MPI_COMM_WORLD, with MPI's errors returned (not
// aborting) and turned into moegrad::Error naming the operation. Built only
// when CMake finds MPI (MOEGRAD_MPI); dist::world() returns one.
//
// How each operation moves data (every tensor staged through host memory):
//   all_reduce_sum  MPI_Gather to rank 0, sum in rank order there, MPI_Bcast,
//                   in buckets of kAllReduceBucket values (float64)
//   broadcast       one MPI_Bcast of all tensors' bytes
//   all_to_all      MPI_Alltoall of the counts, MPI_Alltoallv of the rows' bytes
// Each first checks its arguments and, with an MPI_Allgather, that every
// rank's checks passed and its sizes agree.
#pragma once
#include <functional>

#include "dist/communicator.h"

namespace moegrad::dist {

class MpiCommunicator : public Communicator {
 public:
  // all_reduce_sum's bucket: rank 0 holds world_size buckets at a time (8 MiB each).
  static constexpr int64_t kAllReduceBucket = int64_t{1} << 20;
  // Initialises MPI unless it already is; finalises it on destruction if it did.
  MpiCommunicator();
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  void all_reduce_sum(const std::vector<Tensor>& tensors) override;
  void broadcast(const std::vector<Tensor>& tensors, int root = 0) override;
  std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& send) override;
  Tensor all_to_all(const Tensor& rows, const std::vector<int64_t>& send, const std::vector<int64_t>& recv) override;
  void barrier() override;
  void abort_all(int status) override;  // MPI_Abort

 private:
  // Runs prepare (this rank's checks and staging; it returns a size every
  // rank must share) and compares the sizes of all ranks. Returns the size;
  // when prepare throws on any rank, or the sizes differ, every rank throws
  // (the failing rank its own Error, the others one naming it) instead of
  // leaving the others waiting in the collective.
  int64_t agree_on_size(const std::function<int64_t()>& prepare, const char* op, const char* what);
  int rank_ = 0, size_ = 1;
  bool initialised_here_ = false;
};

}  // namespace moegrad::dist
