// MPI implementation of the communicator (mpi_communicator.h).
#include "dist/mpi_communicator.h"

#include <mpi.h>

#include <climits>
#include <functional>
#include <cstdlib>
#include <numeric>
#include <string>

#include "autograd/node.h"
#include "dist/staging.h"
#include "tensor/error.h"

namespace moegrad::dist {

namespace {
void check_mpi(int code, const char* op) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(std::string(op) + ": MPI failed: " + std::string(text, static_cast<size_t>(length)));
}

// MPI counts are int: Error naming op when a count does not fit.
int as_count(int64_t n, const char* op) {
  MG_CHECK(n >= 0 && n <= INT_MAX, op, ": ", n, " elements exceed what one MPI call moves (", INT_MAX, ")");
  return static_cast<int>(n);
}
}  // namespace

MpiCommunicator::MpiCommunicator() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    MG_CHECK(provided >= MPI_THREAD_FUNNELED, "MPI_Init_thread: this MPI offers thread level ", provided,
             ", below MPI_THREAD_FUNNELED (OpenMP threads beside MPI calls from the main thread)");
    initialised_here_ = true;
  }
  check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (initialised_here_ && !finalised) MPI_Finalize();
}

int64_t MpiCommunicator::agree_on_size(const std::function<int64_t()>& prepare, const char* op, const char* what) {
  std::string problem;
  int64_t value = -1;  // sent when prepare fails: sizes are never negative
  try {
    value = prepare();
  } catch (const std::exception& e) {
    problem = e.what();
    value = -1;
  } catch (...) {
    problem = std::string(op) + ": an unknown exception while checking the arguments";
    value = -1;
  }
  std::vector<int64_t> all(static_cast<size_t>(size_));
  check_mpi(MPI_Allgather(&value, 1, MPI_INT64_T, all.data(), 1, MPI_INT64_T, MPI_COMM_WORLD), op);
  if (!problem.empty()) throw Error(problem);
  for (int r = 0; r < size_; ++r)
    MG_CHECK(all[r] >= 0, op, ": rank ", r, " refused its arguments (its own error says why)");
  for (int r = 0; r < size_; ++r)
    MG_CHECK(all[r] == value, op, ": ranks disagree on ", what, ": rank ", r, " has ", all[r], ", rank ", rank_,
             " has ", value);
  return value;
}

void MpiCommunicator::all_reduce_sum(const std::vector<Tensor>& tensors) {
  const char* op = "all_reduce_sum";
  std::vector<double> values;
  const int64_t n = agree_on_size(
      [&] {
        values = pack_values(tensors, op);
        return static_cast<int64_t>(values.size());
      },
      op, "the number of elements");
  // In buckets: rank 0 holds one bucket of every rank at a time, and each MPI count fits an int.
  const int64_t bucket = std::min<int64_t>(n, kAllReduceBucket);
  std::vector<double> gathered(rank_ == 0 ? static_cast<size_t>(bucket) * static_cast<size_t>(size_) : 0);
  for (int64_t start = 0; start < n; start += bucket) {
    const int count = static_cast<int>(std::min(bucket, n - start));
    double* mine = values.data() + start;
    check_mpi(MPI_Gather(mine, count, MPI_DOUBLE, gathered.data(), count, MPI_DOUBLE, 0, MPI_COMM_WORLD), op);
    if (rank_ == 0)
      for (int r = 1; r < size_; ++r)  // in rank order: (x_0 + x_1) + x_2 ...
        for (int i = 0; i < count; ++i) mine[i] += gathered[static_cast<size_t>(r) * count + i];
    check_mpi(MPI_Bcast(mine, count, MPI_DOUBLE, 0, MPI_COMM_WORLD), op);
  }
  unpack_values(values, tensors);
}

void MpiCommunicator::broadcast(const std::vector<Tensor>& tensors, int root) {
  const char* op = "broadcast";
  std::vector<char> bytes;
  const int n = static_cast<int>(agree_on_size(
      [&] {
        MG_CHECK(root >= 0 && root < size_, op, ": root ", root, " is not a rank of a world of ", size_);
        bytes = pack_bytes(tensors, op);
        return int64_t{as_count(static_cast<int64_t>(bytes.size()), op)};
      },
      op, "the number of bytes"));
  agree_on_size([&] { return int64_t{root}; }, op, "the root");
  check_mpi(MPI_Bcast(bytes.data(), n, MPI_BYTE, root, MPI_COMM_WORLD), op);
  unpack_bytes(bytes, tensors);
}

std::vector<int64_t> MpiCommunicator::all_to_all_counts(const std::vector<int64_t>& send) {
  const char* op = "all_to_all_counts";
  agree_on_size(
      [&] {
        check_counts(send, size_, op, "send");
        return static_cast<int64_t>(send.size());
      },
      op, "the number of counts");
  std::vector<int64_t> recv(static_cast<size_t>(size_));
  check_mpi(MPI_Alltoall(send.data(), 1, MPI_INT64_T, recv.data(), 1, MPI_INT64_T, MPI_COMM_WORLD), op);
  return recv;
}

Tensor MpiCommunicator::all_to_all(const Tensor& rows, const std::vector<int64_t>& send,
                                   const std::vector<int64_t>& recv) {
  const char* op = "all_to_all";
  std::vector<int> send_bytes(size_), send_at(size_), recv_bytes(size_), recv_at(size_);
  std::vector<char> out;
  agree_on_size(
      [&] {
        check_all_to_all(rows, send, recv, size_);
        int64_t row_elements = 1;
        for (int64_t d = 1; d < rows.dim(); ++d) row_elements *= rows.size(d);
        const int64_t bytes_per_row = row_elements * static_cast<int64_t>(dtype_size(rows.dtype()));
        int64_t send_total = 0, recv_total = 0;
        for (int r = 0; r < size_; ++r) {
          send_bytes[r] = as_count(send[r] * bytes_per_row, op), send_at[r] = as_count(send_total, op);
          recv_bytes[r] = as_count(recv[r] * bytes_per_row, op), recv_at[r] = as_count(recv_total, op);
          send_total += send[r] * bytes_per_row, recv_total += recv[r] * bytes_per_row;
        }
        as_count(send_total, op);
        as_count(recv_total, op);
        out = pack_bytes({rows}, op);
        return row_elements;
      },
      op, "the elements per row");
  agree_on_size([&] { return static_cast<int64_t>(rows.dtype()); }, op, "the dtype");
  Shape shape = rows.shape();
  shape[0] = std::accumulate(recv.begin(), recv.end(), int64_t{0});
  Tensor result = Tensor::empty(shape, rows.dtype());
  check_mpi(MPI_Alltoallv(out.data(), send_bytes.data(), send_at.data(), MPI_BYTE, result.raw_data(),
                          recv_bytes.data(), recv_at.data(), MPI_BYTE, MPI_COMM_WORLD),
            op);
  return result.to(rows.device());
}

void MpiCommunicator::abort_all(int status) {
  MPI_Abort(MPI_COMM_WORLD, status);
  std::exit(status);  // MPI_Abort does not return; should it, the process still ends
}

void MpiCommunicator::barrier() { check_mpi(MPI_Barrier(MPI_COMM_WORLD), "barrier"); }

}  // namespace moegrad::dist
